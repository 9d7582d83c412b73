"""jrpc_unix._wire.stdjson: the clients' and the command line's JSON, exact and strict."""

from __future__ import annotations

import pytest

from jrpc_unix._wire.stdjson import UnserializableError, dumps, loads


def test_stdjson_is_exact_and_strict() -> None:

    big = 2**200 + 1
    assert loads(dumps([big, -big, 0.1, "☃", {"k": None}])) == [big, -big, 0.1, "☃", {"k": None}]
    assert dumps("☃\n") == '"☃\\n"'.encode()
    assert dumps("\ud800") == b'"\\ud800"', "a lone surrogate is only valid JSON escaped"
    for bad in (float("nan"), float("inf"), [float("-inf")], object(), {"a": {1, 2}}):
        with pytest.raises(UnserializableError):
            dumps(bad)
    for text, reason in [
        (b"NaN", "NaN is not valid JSON"),
        (b"[Infinity]", "Infinity is not valid JSON"),
        (b"-Infinity", "-Infinity is not valid JSON"),
        (b"1e999", "number 1e999 is out of range"),
        (b"\xff", "can't decode byte 0xff"),
        (b"[1,]", "Expecting value"),
        (b"\xef\xbb\xbf1", "Expecting value"),
    ]:
        with pytest.raises(ValueError, match=reason):
            loads(text)
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        loads(deep)
