"""Property-based tests: arbitrary byte streams, split at arbitrary points, thrown at the framing
(sans-IO: LineSplitter + parse_line) and at a live server over a real socket.

A stream is a sequence of lines of known kinds: calls (each must get exactly one answer, with its
id), notifications (never an answer, but they run), garbage (not JSON: one -32700 each), blank
lines (nothing), batches (one array holding an answer per call, or nothing if all are
notifications). The stream is cut at arbitrary points and written piece by piece; a final call
must still be answered on the same connection, and the server must stay up.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.lowlevel
from helpers import TIMEOUT, cut, short_tmpdir
from helpers.ops import ping, served
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jrpc_unix import Limits, Methods
from jrpc_unix._wire.framing import TOO_LONG, LineSplitter
from jrpc_unix._wire.messages import Request, parse_line

MAX_SIZE = 4096  # the live server's max_message_size: small, so some lines can exceed it
SLOW_DATA = [HealthCheck.too_slow, HealthCheck.data_too_large]


# -- the service -------------------------------------------------------------------------------------


class Notes:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()
        m = self.methods = Methods()

        @m.add
        def ping() -> str:
            return "pong"

        @m.add
        def echo(msg: Any) -> Any:
            return msg

        @m.add
        async def aecho(msg: Any) -> Any:
            await trio.lowlevel.checkpoint()  # answered later: out of order with the calls around it
            return msg

        @m.add(blocking=True)
        def techo(msg: Any) -> Any:
            return msg

        @m.add
        def note(n: int = 1) -> None:
            with self.lock:
                self.count += 1

        @m.add
        def noted() -> int:
            return self.count


@dataclass
class Server:
    path: str
    notes: Notes


@pytest.fixture(scope="module", params=["concurrent", "serial"])
def live(request: pytest.FixtureRequest) -> Iterator[Server]:
    notes = Notes()
    limits = Limits(max_message_size=MAX_SIZE, max_batch=20)
    with short_tmpdir() as d:
        path = os.path.join(d, "fuzz.sock")
        with served(path, notes.methods, limits=limits, mode=request.param):
            yield Server(path, notes)


# -- the stream model --------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@dataclass
class Expect:
    """What the server owes for a stream."""

    calls: dict[Any, Any] = field(default_factory=dict)  # id -> expected answer (minus jsonrpc)
    garbage: int = 0  # lines that are not JSON: one -32700 each
    too_long: int = 0  # lines over MAX_SIZE: one -32001 each
    batches: list[set[Any]] = field(default_factory=list)  # ids answered in one array each
    notes: int = 0  # note notifications that must have run


def _line(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


@st.composite
def call_item(draw: st.DrawFn, rid: int) -> tuple[dict[str, Any], Any]:
    """One call and the answer it must get (without the jsonrpc member)."""
    kind = draw(st.sampled_from(["ping", "echo", "unknown", "bad-params", "echo-named", "aecho", "techo"]))
    if kind == "ping":
        return {"jsonrpc": "2.0", "method": "ping", "id": rid}, {"result": "pong", "id": rid}
    if kind in ("echo", "echo-named", "aecho", "techo"):
        value = draw(json_values)
        params: Any = {"msg": value} if kind == "echo-named" else [value]
        method = "echo" if kind == "echo-named" else kind
        return {"jsonrpc": "2.0", "method": method, "params": params, "id": rid}, {"result": value, "id": rid}
    if kind == "unknown":
        return {"jsonrpc": "2.0", "method": "nope", "id": rid}, {"error": -32601, "id": rid}
    return {"jsonrpc": "2.0", "method": "ping", "params": [1, 2], "id": rid}, {"error": -32602, "id": rid}


@st.composite
def notification_item(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A notification, and whether it counts as a note that must run."""
    kind = draw(st.sampled_from(["note", "unknown", "bad-params"]))
    if kind == "note":
        return {"jsonrpc": "2.0", "method": "note", "params": [draw(st.integers(0, 9))]}, True
    if kind == "unknown":
        return {"jsonrpc": "2.0", "method": "nope"}, False
    return {"jsonrpc": "2.0", "method": "note", "params": {"zz": 1}}, False


def _is_json(line: bytes) -> bool:
    try:
        json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def _blank(line: bytes) -> bool:
    if line.endswith(b"\r"):
        line = line[:-1]
    return not line or line.isspace()


garbage_lines = st.binary(min_size=1, max_size=120).filter(
    lambda b: b"\n" not in b and not _blank(b) and not _is_json(b.removesuffix(b"\r"))
)
blank_lines = st.sampled_from([b"", b" ", b"\t \t", b"\r", b"   \r"])


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, Expect]:
    """A stream of lines of known kinds, and what the server owes for it."""
    expect = Expect()
    out: list[bytes] = []
    next_id = [0]

    def new_id() -> Any:
        next_id[0] += 1
        n = next_id[0]
        return draw(st.sampled_from([n, f"s{n}", n + 0.5, -n]))

    for _ in range(draw(st.integers(0, 14))):
        kinds = ["call", "call", "notification", "garbage", "blank", "batch", "too-long"]
        kind = draw(st.sampled_from(kinds))
        if kind == "call":
            req, answer = draw(call_item(new_id()))
            expect.calls[answer["id"]] = answer
            line = _line(req)
        elif kind == "notification":
            req, counts = draw(notification_item())
            expect.notes += counts
            line = _line(req)
        elif kind == "garbage":
            line = draw(garbage_lines)
            expect.garbage += 1
        elif kind == "blank":
            line = draw(blank_lines)
        elif kind == "too-long":
            line = b'{"jsonrpc":"2.0","method":"echo","id":"big","params":["' + b"x" * MAX_SIZE + b'"]}'
            expect.too_long += 1
        else:
            members, ids = [], set()
            for _ in range(draw(st.integers(1, 5))):
                if draw(st.booleans()):
                    req, answer = draw(call_item(new_id()))
                    expect.calls[answer["id"]] = answer
                    ids.add(answer["id"])
                else:
                    req, counts = draw(notification_item())
                    expect.notes += counts
                members.append(req)
            if ids:
                expect.batches.append(ids)
            line = _line(members)
        out.append(line + draw(st.sampled_from([b"\n", b"\r\n"])))
    return b"".join(out), expect


cut_points = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=25)

FINAL = {"jsonrpc": "2.0", "method": "noted", "id": "final"}


def check_answers(answers: list[Any], expect: Expect, notes_before: int) -> None:
    """Every call answered once, as expected; garbage once each; nothing else."""
    finals = [a for a in answers if isinstance(a, dict) and a.get("id") == "final"]
    assert len(finals) == 1, answers
    final = finals[0]
    answers = [a for a in answers if a is not final]
    assert final == {"jsonrpc": "2.0", "result": notes_before + expect.notes, "id": "final"}, (
        "the last valid request was not answered correctly (or notifications did not all run)"
    )
    seen: dict[Any, Any] = {}
    garbage = too_long = 0
    batches: list[set[Any]] = []
    for answer in answers:
        if isinstance(answer, list):
            batches.append({a["id"] for a in answer})
            assert len(answer) == len(batches[-1]), f"duplicate ids in a batch answer: {answer}"
            members = answer
        else:
            members = [answer]
        for a in members:
            assert a["jsonrpc"] == "2.0"
            if a["id"] is None:
                code = a["error"]["code"]
                assert not isinstance(answer, list), f"a null-id answer inside a batch: {answer}"
                if code == -32700:
                    garbage += 1
                else:
                    assert code == -32001, a
                    too_long += 1
                continue
            assert a["id"] not in seen, f"two answers for id {a['id']!r}"
            seen[a["id"]] = a
    assert garbage == expect.garbage
    assert too_long == expect.too_long
    assert sorted(map(sorted_key, batches)) == sorted(map(sorted_key, expect.batches))
    assert set(seen) == set(expect.calls), "an answer per call, and only per call"
    for rid, want in expect.calls.items():
        got = seen[rid]
        assert type(got["id"]) is type(rid)
        if "result" in want:
            assert got.get("result") == want["result"], got
        else:
            assert got["error"]["code"] == want["error"], got


def sorted_key(ids: set[Any]) -> str:
    return json.dumps(sorted(map(repr, ids)))


def send_and_collect(path: str, chunks: list[bytes]) -> list[Any]:
    """Newline framing: a blank first line chooses it, whatever the fuzz starts with (a first
    0x00, 0x1E or "Content-" would choose another framing: see the test after these)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(path)
    try:
        s.sendall(b"\n")
        for chunk in chunks:
            s.sendall(chunk)
        s.sendall(_line(FINAL) + b"\n")
        s.shutdown(socket.SHUT_WR)  # the server answers everything, then closes
        data = b""
        while chunk := s.recv(1 << 16):
            data += chunk
    finally:
        s.close()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.split(b"\n")[:-1]]


# -- at a live server ------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=SLOW_DATA)
@given(stream=streams(), points=cut_points)
@example(stream=(b"\n\r\n{\n", Expect(garbage=1)), points=[1, 2, 3])
@example(stream=(b'[{"jsonrpc":"2.0","method":"note","params":[1]}]\n', Expect(notes=1)), points=[5])
def test_live_server_answers_every_call_once_however_split(
    live: Server, stream: tuple[bytes, Expect], points: list[int]
) -> None:
    data, expect = stream
    notes_before = live.notes.count
    answers = send_and_collect(live.path, cut(data, points))
    check_answers(answers, expect, notes_before)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), points=cut_points)
@example(data=b"[" * 2000, points=[])
@example(data=b'{"jsonrpc":"2.0","method":"ping","id":1', points=[7])
@example(data=b"\xff\xfe\x00\n\r\r\r", points=[1])
def test_live_server_survives_arbitrary_bytes(live: Server, data: bytes, points: list[int]) -> None:
    """Anything at all, then a newline and a call: the call is answered, every line is JSON-RPC."""
    notes_before = live.notes.count
    answers = send_and_collect(live.path, [*cut(data, points), b"\n"])
    final = [a for a in answers if isinstance(a, dict) and a.get("id") == "final"]
    assert len(final) == 1
    assert final[0]["result"] >= notes_before
    for answer in answers:
        for a in answer if isinstance(answer, list) else [answer]:
            assert a["jsonrpc"] == "2.0"
            assert ("result" in a) != ("error" in a)
    assert len(answers) - 1 <= data.count(b"\n") + 1  # at most one answer per line
    assert ping(live.path)


FRAMING_STARTS = [b"", b"\x00", b"\x00\x00\x00", b"\x1e", b"Content-Length: ", b"content-type:", b"Cont"]


@settings(max_examples=150, deadline=None)
@given(start=st.sampled_from(FRAMING_STARTS), data=st.binary(max_size=2000), points=cut_points)
@example(start=b"\x00", data=b"\x00\x00\x05:{}", points=[])
@example(start=b"Content-Length: ", data=b"99999999999\r\n\r\n{}", points=[3])
def test_live_server_survives_arbitrary_bytes_in_any_framing(
    live: Server, start: bytes, data: bytes, points: list[int]
) -> None:
    """Any start (so any framing), then anything: the server answers what it can, closes after
    the client's EOF, and serves the next connection."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    s.connect(live.path)
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it may close first
            for chunk in cut(start + data, points):
                s.sendall(chunk)
            s.shutdown(socket.SHUT_WR)
        with contextlib.suppress(ConnectionResetError):
            while s.recv(1 << 16):  # (a hang fails here, on the timeout)
                pass
    finally:
        s.close()
    assert ping(live.path)


def test_live_server_still_healthy_after_the_fuzzing(live: Server) -> None:
    assert ping(live.path)


# -- at the framing, sans-IO: the same model, many more examples ----------------------------------------


def frame_and_parse(chunks: list[bytes]) -> list[Any]:
    """What the server would answer, without sockets: (kind, id) per answer it owes."""
    splitter = LineSplitter(MAX_SIZE)
    lines: list[Any] = []
    for chunk in chunks:
        lines += splitter.feed(chunk)
        assert splitter.buffered <= MAX_SIZE
    lines += splitter.eof()
    owed: list[Any] = []
    for line in lines:
        if line is TOO_LONG:
            owed.append(("too-long", None))
            continue
        message = parse_line(line, 20)
        answers = []
        for item in message.items:
            if isinstance(item, Request):
                if not item.is_notification:
                    answers.append(("call", item.id))
            else:
                err = json.loads(item)
                answers.append(("error", err["error"]["code"], err["id"]))
        if message.is_batch:
            if answers:
                owed.append(("batch", frozenset(a[1] for a in answers if a[0] == "call")))
        else:
            owed.extend(answers)
    return owed


@settings(max_examples=400, deadline=None, suppress_health_check=SLOW_DATA)
@given(stream=streams(), points=cut_points)
def test_framing_and_parsing_owe_exactly_the_model(stream: tuple[bytes, Expect], points: list[int]) -> None:
    data, expect = stream
    owed = frame_and_parse(cut(data, points))
    calls = [o[1] for o in owed if o[0] == "call"]
    batch_ids = [set(o[1]) for o in owed if o[0] == "batch"]
    garbage = [o for o in owed if o[0] == "error" and o[1] == -32700]
    too_long = [o for o in owed if o[0] == "too-long"]
    assert len(garbage) == expect.garbage
    assert len(too_long) == expect.too_long
    assert not [o for o in owed if o[0] == "error" and o[1] != -32700], owed
    assert sorted(map(sorted_key, batch_ids)) == sorted(map(sorted_key, expect.batches))
    assert sorted(map(repr, calls + [i for ids in batch_ids for i in ids])) == sorted(map(repr, expect.calls))


@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=5000), points=cut_points)
def test_framing_and_parsing_never_raise_on_arbitrary_bytes(data: bytes, points: list[int]) -> None:
    owed = frame_and_parse(cut(data, points))
    nonblank = [x for x in data.split(b"\n") if not _blank(x)]
    assert len(owed) <= len(nonblank)
