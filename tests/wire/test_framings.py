"""The framing detector and the LSP and json-seq framers, sans-IO (as test_framing.py does the
line splitter): every stream, however cut into reads, gives the same messages; a message over
the limit is one TOO_LONG and is never held; a broken framing is one BadFrame, then nothing."""

from __future__ import annotations

import pytest
from helpers import cut
from hypothesis import given, settings
from hypothesis import strategies as st

from jrpc_unix._wire.framing import TOO_LONG, BadFrame, LineSplitter
from jrpc_unix._wire.framings import NAMES, UNKNOWN, Framer, JsonSeqFramer, LspFramer, detect, first_bytes
from jrpc_unix._wire.unixsock import UnixsockFramer, frame, go_dumps, make_framer

MESSAGES = [b'{"jsonrpc":"2.0","method":"ping","id":1}', b'[{"a":"\xc3\xa9\\n"}]', b'{"b":{"c":[1,2]}}']


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def run(framer: Framer, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out + framer.eof()


def detect_stream(data: bytes) -> tuple[str | None, int]:
    """The framing told byte at a time, and how many bytes it took."""
    for n in range(1, len(data) + 1):
        name = detect(data[:n])
        if name is not None:
            return name, n
    return None, len(data)


# -- the detector ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "framing", "needed"),
    [
        (b'{"jsonrpc"', "newline", 1),
        (b"[{}]", "newline", 1),
        (b"  \r\n{", "newline", 1),
        (b"\x00\x00\x00\x65:{", "unixsock", 1),
        (b"Content-Length: 12\r\n", "lsp", 15),
        (b"content-LENGTH:12\r\n", "lsp", 15),
        (b"Content-Type: application/json\r\n", "lsp", 13),
        (b"\x1e{}\n", "json-seq", 1),
        (b"GET / HTTP/1.1\r\n", UNKNOWN, 1),
        (b"Content-Len", None, 11),
        (b"Contend-Length:", UNKNOWN, 7),
        (b"\xff\xfe", UNKNOWN, 1),
    ],
)
def test_detect_byte_at_a_time(start: bytes, framing: str | None, needed: int) -> None:
    assert detect_stream(start) == (framing, needed)


def test_unknown_start_named_in_hex_for_the_log() -> None:
    assert first_bytes(b"\x00\x00\x00\x65:{") == "00 00 00 65 3a 7b"
    assert first_bytes(b"GET / HTTP/1.1") == "47 45 54 20 2f 20 48 54"


def test_every_name_makes_its_framer() -> None:
    for name, kind in zip(NAMES, (LineSplitter, UnixsockFramer, LspFramer, JsonSeqFramer), strict=True):
        assert make_framer(name, 10).name == name
        assert isinstance(make_framer(name, 10), kind)
    assert isinstance(make_framer(UNKNOWN, 10), LineSplitter)


# -- LSP ---------------------------------------------------------------------------------------


def lsp(body: bytes, extra: bytes = b"") -> bytes:
    return b"Content-Length: %d\r\n%b\r\n%b" % (len(body), extra, body)


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=6))
@settings(max_examples=200)
def test_lsp_however_cut(points: list[int]) -> None:
    stream = lsp(MESSAGES[0]) + lsp(
        MESSAGES[1], b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\n"
    )
    stream += lsp(MESSAGES[2])
    assert run(LspFramer(100), cut(stream, points)) == MESSAGES


def test_lsp_one_byte_at_a_time_and_answers() -> None:
    framer = LspFramer(100)
    assert run(framer, one_byte_at_a_time(b"".join(lsp(m) for m in MESSAGES))) == MESSAGES
    assert framer.encode([b"{}", b"[1]"]) == b"Content-Length: 2\r\n\r\n{}Content-Length: 3\r\n\r\n[1]"


def test_lsp_body_over_the_limit_is_dropped_as_it_comes() -> None:
    framer = LspFramer(10)
    assert framer.feed(b"Content-Length: 1000000000\r\n\r\n" + b"x" * 100) == [TOO_LONG]
    assert framer.mid_line
    assert len(framer._buf) == 0
    assert framer.feed(b"x" * (1000000000 - 101)) == []
    assert framer.feed(b"x" + lsp(b"{}")) == [b"{}"]
    assert not framer.mid_line


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (b"Content-Length: ten\r\n\r\n{}", "Content-Length is not a length"),
        (b"Content-Type: x\r\n\r\n{}", "no Content-Length header"),
        (b"Content-Length: 2\r\nbogus\r\n\r\n{}", "a header line without ':'"),
        (b"Content-Length: 2\r\n" + b"X-Pad: " + b"a" * 5000, "no end of the header block"),
    ],
)
def test_lsp_broken_framing_is_one_bad_frame_then_nothing(stream: bytes, reason: str) -> None:
    framer = LspFramer(100)
    out = run(framer, [stream, lsp(b"{}")])
    assert len(out) == 1, out
    assert isinstance(out[0], BadFrame)
    assert reason in out[0].reason
    assert framer.ended


def test_lsp_eof_inside_a_message() -> None:
    (out,) = run(LspFramer(100), [b"Content-Length: 9\r\n\r\n{}"])
    assert isinstance(out, BadFrame)
    assert "ended inside a message" in out.reason


# -- RFC 7464 json-seq -------------------------------------------------------------------------


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=6))
@settings(max_examples=200)
def test_json_seq_however_cut(points: list[int]) -> None:
    stream = b"".join(b"\x1e" + m + b"\n" for m in MESSAGES)
    assert run(JsonSeqFramer(100), cut(stream, points)) == MESSAGES


def test_json_seq_answers_a_record_at_its_newline() -> None:
    framer = JsonSeqFramer(100)
    assert framer.feed(b"\x1e{\n") == []  # a newline inside the text: not the end yet
    assert framer.feed(b'"a": 1}') == []
    assert framer.feed(b"\n") == [b'{\n"a": 1}']
    assert framer.feed(b"\x1enot json\n") == []  # ends at the next RS, or EOF
    assert framer.eof() == [b"not json"]
    assert framer.encode([b"{}", b"[]"]) == b"\x1e{}\n\x1e[]\n"


def test_json_seq_record_over_the_limit() -> None:
    framer = JsonSeqFramer(10)
    assert framer.feed(b"\x1e" + b"1" * 6) == []
    assert framer.feed(b"2" * 6) == [TOO_LONG]
    assert len(framer._buf) == 0
    assert framer.mid_line
    assert framer.feed(b"3" * 1000 + b"\n\x1e{}\n") == [b"{}"]


# -- the Go original's frames ------------------------------------------------------------------


def envelope(cmd: str, args: str = "{}", respond: bool = True, close: bool = True) -> bytes:
    body = f'{{"cmd":"{cmd}","args":{args},"response":{{"status":"","error":"","payload":""}},'
    body += f'"respond":{str(respond).lower()},"close":{str(close).lower()}}}'
    return frame(body.encode())


def test_unixsock_frames_become_requests_one_byte_at_a_time() -> None:
    framer = UnixsockFramer(1000)
    stream = envelope("ping", close=False) + envelope("config.set", '{"k":1}', respond=False, close=False)
    out = run(framer, one_byte_at_a_time(stream))
    assert out == [
        b'{"jsonrpc":"2.0","method":"ping","params":{},"id":0}',
        b'{"jsonrpc":"2.0","method":"config.set","params":{"k":1}}',
    ]
    assert not framer.ended


def test_unixsock_close_true_ends_reading() -> None:
    framer = UnixsockFramer(1000)
    assert framer.feed(envelope("a", "null") + envelope("b")) == [b'{"jsonrpc":"2.0","method":"a","id":0}']
    assert framer.ended
    assert framer.feed(envelope("c")) == []


def test_unixsock_keys_any_case_and_zero_values() -> None:
    framer = UnixsockFramer(1000)
    assert framer.feed(frame(b'{"CMD":"x","Args":null,"RESPOND":true}')) == [
        b'{"jsonrpc":"2.0","method":"x","id":0}'
    ]
    assert not framer.ended  # close missing: false
    assert framer.feed(frame(b'{"cmd":"y"}')) == [b'{"jsonrpc":"2.0","method":"y"}']  # respond missing: false


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1]", "not a JSON object"),
        (b"{nope", "not JSON"),
        (b'{"cmd":1}', '"cmd" is int, not str'),
        (b'{"cmd":"x","args":[1]}', '"args" is list, not dict'),
    ],
)
def test_unixsock_bad_envelope(body: bytes, reason: str) -> None:
    (out,) = UnixsockFramer(1000).feed(frame(body))
    assert isinstance(out, BadFrame)
    assert reason in out.reason


def test_unixsock_frame_over_the_limit_is_not_allocated() -> None:
    framer = UnixsockFramer(1000)
    assert framer.feed(b"\x00\x10\x00\x00:" + b"x" * 10) == [TOO_LONG]  # 1 MiB declared
    assert len(framer._buf) == 0
    assert framer.mid_line
    assert framer.feed(b"x" * (0x100000 - 10)) == []
    assert framer.feed(envelope("ping")) == [b'{"jsonrpc":"2.0","method":"ping","params":{},"id":0}']


def test_unixsock_no_separator_is_a_broken_framing() -> None:
    framer = UnixsockFramer(100)
    (out,) = framer.feed(b"\x00\x00\x00\x02{}")
    assert isinstance(out, BadFrame)
    assert "not ':'" in out.reason
    assert framer.ended
    half = UnixsockFramer(100)
    half.feed(b"\x00\x00\x00\x09:{")
    (cut_short,) = half.eof()
    assert isinstance(cut_short, BadFrame)
    assert "inside a frame" in cut_short.reason


@pytest.mark.parametrize(
    ("value", "go"),
    [
        ("plain é ☃", '"plain é ☃"'),
        (
            '<a&b> "q" \\ \n \t \b \f \x01 \u2028',
            r'"\u003ca\u0026b\u003e \"q\" \\ \n \t \u0008 \u000c \u0001 \u2028"',
        ),
        ({"b": [1, 2.5, 3.0, None, True], "a": {}}, '{"a":{},"b":[1,2.5,3,null,true]}'),
        (
            [1e21, 1e-7, 1.5e-9, 123456789.125, -0.0, 1e20],
            "[1e+21,1e-7,1.5e-9,123456789.125,-0,100000000000000000000]",
        ),
        (18446744073709551615, "18446744073709551615"),  # exact unless float64=True
    ],
)
def test_go_dumps_writes_what_go_marshals(value: object, go: str) -> None:
    assert go_dumps(value).decode() == go


def test_go_dumps_float64_rounds_integers_as_go_decoded_them() -> None:
    assert (
        go_dumps([9007199254740993, 18446744073709551615, 3], float64=True)
        == b"[9007199254740992,18446744073709552000,3]"
    )
