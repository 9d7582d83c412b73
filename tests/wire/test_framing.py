"""jrpc_unix._wire.framing.LineSplitter, sans-IO: bytes in, lines out (as h11's tests do it).

The reference below states the framing rules of specs/protocol.md §2 in the plainest way (split
the whole stream at once); the splitter must give exactly its lines however the stream is cut
into reads, while holding at most ``max_size`` bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jrpc_unix._wire.framing import TOO_LONG, LineSplitter

Out = list[object]


def reference(stream: bytes, max_size: int) -> Out:
    """The framing rules, applied to the whole stream at once."""
    parts = stream.split(b"\n")
    out: Out = []
    for i, line in enumerate(parts):
        last = i == len(parts) - 1
        if line.endswith(b"\r") and not last:
            line = line[:-1]
        elif last and line.endswith(b"\r"):
            line = line[:-1]  # a final unterminated line: its trailing \r is dropped too
        if len(line) > max_size:
            out.append(TOO_LONG)
        elif line and not line.isspace():
            out.append(line)
    return out


def feed_all(chunks: Iterable[bytes], max_size: int) -> Out:
    splitter = LineSplitter(max_size)
    out: Out = []
    for chunk in chunks:
        out += splitter.feed(chunk)
        assert splitter.buffered <= max_size, (splitter.buffered, max_size)
    out += splitter.eof()
    assert splitter.buffered == 0
    return out


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    points = sorted({p % (len(data) + 1) for p in points})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


# -- examples ----------------------------------------------------------------------------------


def test_whole_lines_in_one_read() -> None:
    assert feed_all([b'{"a":1}\n{"b":2}\n'], 100) == [b'{"a":1}', b'{"b":2}']


def test_one_byte_at_a_time() -> None:
    data = b'{"jsonrpc":"2.0","method":"ping","id":1}\n{"x":"\xc3\xa9\xe2\x82\xac"}\r\n\n  \nlast'
    assert feed_all(one_byte_at_a_time(data), 1000) == [
        b'{"jsonrpc":"2.0","method":"ping","id":1}',
        b'{"x":"\xc3\xa9\xe2\x82\xac"}',
        b"last",
    ]


def test_nothing_until_the_newline_arrives() -> None:
    s = LineSplitter(100)
    assert s.feed(b'{"a"') == []
    assert s.feed(b":1}") == []
    assert s.buffered == 7
    assert s.feed(b"\n") == [b'{"a":1}']
    assert s.buffered == 0


@pytest.mark.parametrize("split", range(1, 4))
def test_multibyte_utf8_split_across_reads(split: int) -> None:
    euro = "€".encode()  # 3 bytes: e2 82 ac
    line = b'"' + euro + b'"'
    s = LineSplitter(100)
    assert s.feed(line[: split + 1]) == []
    assert s.feed(line[split + 1 :] + b"\n") == [line]
    assert line.decode() == '"€"'


def test_crlf_line_endings() -> None:
    assert feed_all([b"a\r\nb\r\n"], 10) == [b"a", b"b"]
    assert feed_all([b"a\r", b"\nb\r", b"\n"], 10) == [b"a", b"b"]


def test_only_one_trailing_cr_is_dropped() -> None:
    assert feed_all([b"a\r\r\n"], 10) == [b"a\r"]


def test_blank_and_whitespace_lines_are_skipped() -> None:
    assert feed_all([b"\n\n\r\n   \n\t\r\nx\n\n"], 10) == [b"x"]


def test_final_line_without_newline_is_a_message() -> None:
    s = LineSplitter(100)
    assert s.feed(b'{"a":1}\n{"b"') == [b'{"a":1}']
    assert s.eof() == [b'{"b"']


def test_final_line_with_cr_only() -> None:
    s = LineSplitter(100)
    assert s.feed(b"abc\r") == []
    assert s.eof() == [b"abc"]


def test_eof_with_nothing_buffered() -> None:
    s = LineSplitter(100)
    assert s.eof() == []
    assert s.feed(b"x\n") == [b"x"]
    assert s.eof() == []


def test_max_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_size must be at least 1 byte"):
        LineSplitter(0)


# -- over-size lines ---------------------------------------------------------------------------


def test_line_of_exactly_max_size_is_accepted() -> None:
    assert feed_all([b"x" * 10 + b"\n"], 10) == [b"x" * 10]
    assert feed_all(one_byte_at_a_time(b"x" * 10 + b"\n"), 10) == [b"x" * 10]


def test_over_size_line_reported_once_and_next_line_served() -> None:
    data = b"y" * 1000 + b"\nok\n"
    assert feed_all([data], 10) == [TOO_LONG, b"ok"]
    assert feed_all(one_byte_at_a_time(data), 10) == [TOO_LONG, b"ok"]


def test_over_size_line_is_discarded_as_it_arrives() -> None:
    s = LineSplitter(10)
    out = s.feed(b"z" * 11)
    assert out == [TOO_LONG]
    assert s.buffered == 0
    for _ in range(1000):  # a huge line in many reads: nothing held, reported once
        assert s.feed(b"z" * 100) == []
        assert s.buffered == 0
    assert s.feed(b"zz\nnext\n") == [b"next"]


def test_over_size_final_line_at_eof_is_reported_once() -> None:
    s = LineSplitter(5)
    assert s.feed(b"abcdefgh") == [TOO_LONG]
    assert s.eof() == []


def test_over_size_then_eof_then_reuse() -> None:
    s = LineSplitter(5)
    assert s.feed(b"abcdefgh") == [TOO_LONG]
    assert s.eof() == []
    assert s.feed(b"ok\n") == [b"ok"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 4096])
def test_memory_bounded_however_split(chunk: int) -> None:
    data = (b"a" * 50 + b"\n" + b"b" * 5000 + b"\n") * 5
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    splitter = LineSplitter(100)
    out: Out = []
    for c in chunks:
        out += splitter.feed(c)
        assert splitter.buffered <= 100
    out += splitter.eof()
    assert out == [b"a" * 50, TOO_LONG] * 5


def test_crlf_at_the_size_limit_does_not_depend_on_the_split() -> None:
    line = b"abcde\r\n"
    assert feed_all([line], 5) == [b"abcde"]  # whole: accepted (the \r belongs to the newline)
    assert feed_all([line[:6], line[6:]], 5) == [b"abcde"]
    assert feed_all([b"abcdef\r", b"x\n"], 6) == [TOO_LONG]


@pytest.mark.parametrize(
    "chunks",
    [[b"abcde\r\r", b"\n"], [b"abcde\r\r"]],
    ids=["newline-in-the-next-read", "at-eof"],
)
def test_line_content_ending_in_cr_at_the_size_limit(chunks: list[bytes]) -> None:
    """ "abcde\\r\\r\\n" is the 6-byte line "abcde\\r": only one trailing \\r is dropped."""
    assert reference(b"".join(chunks), 6) == [b"abcde\r"]
    assert feed_all(chunks, 6) == [b"abcde\r"]


# -- linear time on long lines ----------------------------------------------------------------


def test_long_line_in_many_small_reads_is_not_rescanned() -> None:
    """1 MiB in 1 kB reads: a quadratic rescan would take seconds; h11's trick keeps it linear."""
    s = LineSplitter(2 << 20)
    block = b"q" * 1024
    for _ in range(1024):
        assert s.feed(block) == []
    assert s.feed(b"\n") == [block * 1024]


# -- properties --------------------------------------------------------------------------------

# Bytes that matter to framing, plus a few ordinary and non-ASCII ones.
framing_bytes = st.lists(
    st.sampled_from([b"\n", b"\r", b" ", b"\t", b"a", b"{", b"\xc3\xa9", b"\xe2\x82\xac", b"\xff", b"\x00"]),
    max_size=200,
).map(b"".join)
cut_points = st.lists(st.integers(min_value=0, max_value=10_000), max_size=30)


@settings(max_examples=300, deadline=None)
@given(data=framing_bytes, points=cut_points)
@example(data=b"a\r\nb", points=[2])
@example(data=b"\xe2\x82\xac\n", points=[1, 2])
def test_any_split_gives_the_reference_lines(data: bytes, points: list[int]) -> None:
    """No line is over-size here (max_size is large): every split equals the reference."""
    assert feed_all(cut(data, points), 10_000) == reference(data, 10_000)


@settings(max_examples=300, deadline=None)
@given(data=framing_bytes, points=cut_points)
def test_one_byte_reads_equal_one_big_read(data: bytes, points: list[int]) -> None:
    assert feed_all(one_byte_at_a_time(data), 10_000) == feed_all([data], 10_000)


no_cr_bytes = st.lists(st.sampled_from([b"\n", b" ", b"a", b"bb", b"\xe2\x82\xac"]), max_size=200).map(
    b"".join
)


@settings(max_examples=500, deadline=None)
@given(data=no_cr_bytes, points=cut_points, max_size=st.integers(min_value=1, max_value=12))
@example(data=b"aaaa\nb\n", points=[2], max_size=3)
@example(data=b"aaa", points=[], max_size=3)
@example(data=b"aaaa", points=[1, 2], max_size=3)
def test_over_size_lines_any_split_bounded_memory(data: bytes, points: list[int], max_size: int) -> None:
    """Small limits: over-size lines become one TOO_LONG each, whatever the reads; memory bounded."""
    assert feed_all(cut(data, points), max_size) == reference(data, max_size)


@settings(max_examples=500, deadline=None)
@given(data=framing_bytes, points=cut_points, max_size=st.integers(min_value=1, max_value=12))
@example(data=b"abcde\r\r\n", points=[7], max_size=6)  # always tried first: the bug above
@example(data=b"abcde\r\n", points=[6], max_size=5)
def test_over_size_with_crlf_any_split(data: bytes, points: list[int], max_size: int) -> None:
    assert feed_all(cut(data, points), max_size) == reference(data, max_size)
