"""JSON text <-> Python values, exact and strict, fast where it can be.

orjson does the common case. Where it would change a value, the stdlib does it instead:
integers wider than 64 bits (orjson reads them as floats and will not write them), dict keys that
are not strings, lone surrogates. NaN and Infinity are not JSON: they are rejected when read and
refused when written (orjson would silently write ``null``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import orjson

from .stdjson import UnserializableError
from .stdjson import dumps as _std_dumps
from .stdjson import loads as _std_loads

__all__ = ["UnserializableError", "dumps", "loads", "parser_for"]

# A run of 19+ digits may be an integer beyond orjson's range (u64 above zero, i64 below), which
# it would read as a float. Found by mapping every digit to "0" and everything else to "x",
# which is cheaper than a regex (specs/performance.md).
_DIGITS_TO_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x78 for b in range(256))
_LONG_RUN = b"0" * 19


def parser_for(text: bytes) -> Callable[[bytes], Any]:
    """The parser for lines cut from ``text``: ``orjson.loads`` itself when ``text`` holds no
    run of 19+ digits (then none of its lines can), else :func:`loads`, which checks each line.

    One check per read instead of one per line: a 64-line read costs one ``translate`` of the
    whole text instead of a check per line (specs/performance.md).
    """
    if _LONG_RUN not in text.translate(_DIGITS_TO_ZERO):
        return orjson.loads
    return loads


def loads(data: bytes) -> Any:
    """Parse one JSON text; raises ValueError (with a readable reason) when it is not JSON."""
    if len(data) < 19 or _LONG_RUN not in data.translate(_DIGITS_TO_ZERO):
        return orjson.loads(data)
    value = _std_loads(data)  # strict UTF-8: no encoded surrogates, no BOM
    _check_strings(value)  # nor escaped lone surrogates ("\ud800"), which orjson refuses too
    return value


def _check_strings(obj: Any) -> None:
    """Raise ValueError for a string that is not valid Unicode (a lone surrogate)."""
    if isinstance(obj, str):
        obj.encode("utf-8")  # UnicodeEncodeError is a ValueError
    elif isinstance(obj, dict):
        for key, value in obj.items():
            key.encode("utf-8")
            _check_strings(value)
    elif isinstance(obj, list):
        for value in obj:
            _check_strings(value)


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
    except TypeError:  # ints beyond 64 bits, non-string keys, lone surrogates
        return _std_dumps(obj)
    # orjson writes NaN/Infinity as null. (find, not `in`: on 3.11 bytes.__contains__ first
    # tries its operand as an integer and swallows the TypeError, on every answer.)
    if out.find(b"null") != -1 and _has_nonfinite(obj):
        raise UnserializableError("NaN and Infinity are not valid JSON")
    return out
