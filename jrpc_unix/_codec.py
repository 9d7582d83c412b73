"""JSON text <-> Python values, exact and strict, fast where it can be.

orjson does the common case. Where it would change a value, the stdlib does it instead:
integers wider than 64 bits (orjson reads them as floats and will not write them), dict keys that
are not strings, lone surrogates. NaN and Infinity are not JSON: they are rejected when read and
refused when written (orjson would silently write ``null``).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

__all__ = ["UnserializableError", "dumps", "loads"]

# A run of 20+ digits may be an integer beyond 64 bits (orjson would read it as a float).
_LONG_DIGITS = re.compile(rb"\d{20}")


class UnserializableError(ValueError):
    """The value has no exact JSON text."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes) -> Any:
    """Parse one JSON text; raises ValueError (with a readable reason) when it is not JSON."""
    if _LONG_DIGITS.search(data) is None:
        return orjson.loads(data)
    return json.loads(data, parse_constant=_reject_constant)


def _has_nonfinite(obj: Any) -> bool:
    if isinstance(obj, float):
        return not math.isfinite(obj)
    if isinstance(obj, dict):
        return any(_has_nonfinite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_has_nonfinite(v) for v in obj)
    return False


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes with no raw newline; raises UnserializableError if there are none."""
    try:
        out = orjson.dumps(obj)
    except TypeError:
        try:
            return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
        except (TypeError, ValueError, RecursionError) as exc:
            raise UnserializableError(str(exc)) from None
    if b"null" in out and _has_nonfinite(obj):  # orjson writes NaN/Infinity as null
        raise UnserializableError("NaN and Infinity are not valid JSON")
    return out
