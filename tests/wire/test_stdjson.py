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


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (b'{"jsonrpc":"2.0","result":"info","id":1}', {"jsonrpc": "2.0", "result": "info", "id": 1}),
        (b' {"a": [1, 2.5, null]} \t', {"a": [1, 2.5, None]}),
        (b"\t\r 7", 7),
        (b'"x" ', "x"),
        (b"[]", []),
    ],
)
def test_a_text_with_or_without_whitespace_around_it_reads_the_same(text: bytes, value: object) -> None:
    """A line with no whitespace around its value is read by the decoder's scanner alone; any
    other text goes through the whole decoder: the same values, the same errors."""
    assert loads(text) == value


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (b"", "Expecting value: line 1 column 1"),
        (b"   ", "Expecting value: line 1 column 4"),
        (b"1 2", "Extra data: line 1 column 3"),
        (b'{"a":1}x', "Extra data: line 1 column 8"),
        (b'{"a":1', "Expecting ',' delimiter"),
        (b"[1e999]", "number 1e999 is out of range"),
        (b" NaN", "NaN is not valid JSON"),
    ],
)
def test_what_is_not_one_json_text_is_refused_with_the_decoders_reason(text: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        loads(text)
