"""JSON with the standard library's ``json``, exact and strict: the clients' and the CLI's codec,
and the server's fallback wherever orjson would not be exact (:mod:`._codec`).

The server's hot path uses orjson. The client side does not: a
``jrpc-unix call`` process lives a few tens of milliseconds, and importing orjson (it loads
dataclasses, inspect, uuid and datetime) would be a large share of it, while the JSON it
handles takes microseconds (figures: specs/performance.md). The
stdlib is exact where it matters: integers of any size are read and written as themselves.
NaN and Infinity are not JSON: refused when written, rejected when read, and so is a number
too large for a float (``1e999`` would silently become infinity).
"""

from __future__ import annotations

import json
import math

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["UnserializableError", "dumps", "loads"]


class UnserializableError(ValueError):
    """The value has no exact JSON text."""


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


_DECODER = json.JSONDecoder(parse_float=_finite_float, parse_constant=_reject_constant)
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]  # (set by __init__; typeshed omits it)
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_ASCII_ENCODER = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def loads(data: bytes) -> Any:
    """Parse one JSON text (UTF-8); raises ValueError with a readable reason when it is not JSON."""
    text = data.decode()
    try:
        obj, end = _SCAN(text, 0)  # a line with no whitespace around it: decode()'s regexes skipped
        if end == len(text):
            return obj
    except StopIteration:  # (not a value at 0: decode() says why)
        pass
    except RecursionError:
        raise ValueError("the JSON text is nested too deeply") from None
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError("the JSON text is nested too deeply") from None


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON with no raw newline; raises UnserializableError if there is none."""
    try:
        text = _ENCODER.encode(obj)
        try:
            return text.encode()
        except UnicodeEncodeError:  # a lone surrogate: valid JSON only as a \\u escape
            return _ASCII_ENCODER.encode(obj).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise UnserializableError(str(exc)) from None
