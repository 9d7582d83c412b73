"""The server over real UNIX sockets: in-process (trio ``nursery.start(server.serve, path)`` and
``serve_in_thread``), plus the demo service as a subprocess for signals.

No transport is mocked and nothing sleeps and hopes: orderings are proven with handlers that
record events and wait on each other (trio events, ``wait_all_tasks_blocked``), and every read
is bounded by ``trio.fail_after`` or a socket timeout.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import stat
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import (
    SPEC_EXAMPLES,
    TIMEOUT,
    DemoProcess,
    LineClient,
    TrioLineClient,
    assert_answer,
    demo_module,
    lines,
    notification,
    request,
    serving,
    short_tmpdir,
    wait_for,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jrpc_unix import (
    AddressInUseError,
    Limits,
    Methods,
    Response,
    Server,
    ServerSetupError,
    current_context,
    serve_in_thread,
)

FAST = Limits(shutdown_grace=2.0)


@contextlib.asynccontextmanager
async def client(path: str) -> AsyncIterator[TrioLineClient]:
    c = await TrioLineClient.connect(path)
    try:
        yield c
    finally:
        await c.aclose()


def basic_methods() -> Methods:
    methods = Methods()

    @methods.add
    def ping() -> str:
        return "pong"

    @methods.add
    def echo(x: Any) -> Any:
        return x

    @methods.add
    async def nap(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    @methods.add
    def crash() -> None:
        raise RuntimeError("crash")

    return methods


def exists(path: str) -> bool:
    return os.path.exists(path)


def write_file(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def nothing_to_read(c: TrioLineClient) -> bool:
    """True if no answer bytes are waiting (call only once the server is quiescent)."""
    readable, _, _ = select.select([c.stream.socket.fileno()], [], [], 0)
    return not readable and not c._buf


# -- errors keep the connection usable -------------------------------------------------------------


async def test_invalid_json_is_parse_error_and_connection_stays_usable(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        await c.send(b'{"jsonrpc": "2.0", "method": "ping", "id": \n')
        answer = await c.read_json()
        assert answer["error"]["code"] == -32700
        assert answer["error"]["message"] == "Parse error"
        assert answer["id"] is None
        assert await c.call("ping", rid=2) == {"jsonrpc": "2.0", "result": "pong", "id": 2}


async def test_over_size_line_is_32001_and_connection_stays_usable(sock_path: str) -> None:
    limits = Limits(max_message_size=100, shutdown_grace=2)
    async with serving(sock_path, basic_methods(), limits=limits), client(sock_path) as c:
        await c.send(b'{"jsonrpc":"2.0","method":"echo","params":["' + b"x" * 1000 + b'"],"id":1}\n')
        answer = await c.read_json()
        assert answer["error"]["code"] == -32001
        assert answer["error"]["message"] == "Request too large"
        assert answer["id"] is None
        assert await c.call("ping", rid=2) == {"jsonrpc": "2.0", "result": "pong", "id": 2}
        # The same, arriving in many small writes: still one error, then normal service.
        for _ in range(50):
            await c.send(b"y" * 37)
        await c.send(b"\n" + lines(request("ping", rid=3)))
        assert (await c.read_json())["error"]["code"] == -32001
        assert (await c.read_json())["id"] == 3
        # A line of exactly the limit is accepted.
        exact = b'{"jsonrpc":"2.0","method":"echo","params":["' + b"z" * 46 + b'"],"id":4}'
        assert len(exact) == 100
        await c.send(exact + b"\n")
        assert (await c.read_json())["result"] == "z" * 46


@pytest.mark.parametrize(
    ("bad", "rid"),
    [
        (b"\xff\xfe", b"1"),
        (b"\xed\xa0\x80", b"1"),  # an encoded surrogate
        (b"\xff\xfe", b"12345678901234567890"),  # a 20-digit id: the stdlib parser's path
        (b"\xed\xa0\x80", b"12345678901234567890"),
    ],
)
async def test_invalid_utf8_is_parse_error(sock_path: str, bad: bytes, rid: bytes) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        await c.send(b'{"jsonrpc":"2.0","method":"echo","params":["' + bad + b'"],"id":' + rid + b"}\n")
        answer = await c.read_json()
        assert answer["error"]["code"] == -32700
        assert answer["id"] is None
        await c.send('{"jsonrpc":"2.0","method":"echo","params":["é€😀"],"id":2}\n'.encode())
        assert (await c.read_json())["result"] == "é€😀"


@pytest.mark.parametrize("opener", [b"[", b'{"a":'], ids=["arrays", "objects"])
async def test_deeply_nested_json_is_a_clear_error_not_a_crash(sock_path: str, opener: bytes) -> None:
    async with serving(sock_path, basic_methods()) as server, client(sock_path) as c:
        await c.send(opener * 100_000 + b"\n")
        answer = await c.read_json()
        assert answer["error"]["code"] in (-32700, -32600)
        assert answer["id"] is None
        assert await c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}
        assert server.stats.connections_open == 1


async def test_deeply_nested_json_with_a_20_digit_number(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        await c.send(b"[" * 100_000 + b"12345678901234567890\n")
        assert (await c.read_json())["error"]["code"] == -32700
        assert await c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}


async def test_overflowing_id_with_a_20_digit_run_gets_an_answer(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        await c.send(b'{"jsonrpc":"2.0","method":"echo","params":["12345678901234567890"],"id":1e400}\n')
        assert "error" in await c.read_json()
        assert await c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}


@pytest.mark.parametrize("with_too_long", [False, True])
async def test_wide_integers_among_ordinary_lines_of_one_read(sock_path: str, with_too_long: bool) -> None:
    """The 19-digit check runs once per read: a wide integer on one line of many stays exact."""
    limits = Limits(max_message_size=200, shutdown_grace=2)
    wide = [2**64, -(2**63) - 1, 10**30]
    big = [b'{"jsonrpc":"2.0","method":"echo","params":[%d],"id":%d}' % (n, i) for i, n in enumerate(wide)]
    ordinary = [b'{"jsonrpc":"2.0","method":"echo","params":[%d],"id":%d}' % (i, 10 + i) for i in range(5)]
    payload = [ordinary[0], big[0], ordinary[1], ordinary[2], big[1], big[2], *ordinary[3:]]
    if with_too_long:
        payload.insert(3, b"x" * 300)
    async with serving(sock_path, basic_methods(), limits=limits), client(sock_path) as c:
        await c.send(b"\n".join(payload) + b"\n")
        answers = [await c.read_json() for _ in payload]
    if with_too_long:
        assert answers.pop(3)["error"]["code"] == -32001
    results = {a["id"]: a["result"] for a in answers}
    assert results == {**dict(enumerate(wide)), **{10 + i: i for i in range(5)}}
    assert all(type(v) is int for v in results.values())


async def test_crlf_blank_lines_and_final_line_without_newline(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        await c.send(b'\r\n  \n{"jsonrpc":"2.0","method":"ping","id":1}\r\n\n')
        await c.send(b'{"jsonrpc":"2.0","method":"ping","id":2}')  # no newline: then EOF
        await c.send_eof()
        raw = await c.read_to_eof()
    assert [json.loads(x)["id"] for x in raw.splitlines()] == [1, 2]
    assert raw.endswith(b"\n")


async def test_answers_are_one_line_of_compact_json(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        await c.send(lines(request("echo", ["a\nb\r\nc\u2028"], 1)))
        line = await c.readline()
    assert line == b'{"jsonrpc":"2.0","result":"a\\nb\\r\\nc\xe2\x80\xa8","id":1}'


@pytest.mark.parametrize("fast_path", [True, False])
async def test_spec_examples_in_process_with_and_without_fast_path(sock_path: str, fast_path: bool) -> None:
    """The demo's answers, from an in-process server, with both dispatch paths."""
    async with serving(sock_path, demo_module().methods, fast_path=fast_path):
        for _, req, want in SPEC_EXAMPLES:
            async with client(sock_path) as c:
                await c.send(req.encode() + b"\n")
                await c.send_eof()
                raw = await c.read_to_eof()
            if want is None:
                assert raw == b""
            else:
                assert_answer(json.loads(raw), want)


# -- half-close ------------------------------------------------------------------------------------


async def test_half_close_with_a_slow_call_pending_still_answers(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        await c.send(lines(request("nap", [0.5], "slow")))
        await c.send_eof()
        assert await c.read_json() == {"jsonrpc": "2.0", "result": 0.5, "id": "slow"}
        assert await c.read_to_eof() == b""  # then the server closes


async def test_half_close_answers_everything_received(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        reqs = [request("nap", [0.05 * (i % 3)], i) if i % 2 else request("echo", [i], i) for i in range(40)]
        await c.send(lines(*reqs) + b'[{"jsonrpc":"2.0","method":"nap","params":[0.1],"id":"b"}]\n')
        await c.send_eof()
        raw = await c.read_to_eof()
    answers = [json.loads(x) for x in raw.splitlines()]
    singles = sorted(a["id"] for a in answers if isinstance(a, dict))
    assert singles == list(range(40))
    assert [a for a in answers if isinstance(a, list)] == [[{"jsonrpc": "2.0", "result": 0.1, "id": "b"}]]


async def test_notification_runs_even_if_the_client_closes_at_once(sock_path: str) -> None:
    done = trio.Event()
    methods = Methods()

    @methods.add
    async def note() -> None:
        await trio.lowlevel.checkpoint()
        done.set()

    async with serving(sock_path, methods), client(sock_path) as c:
        await c.send(lines(notification("note")))
        await c.aclose()
        with trio.fail_after(TIMEOUT):
            await done.wait()


# -- ordering --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sync", "async", "blocking"])
async def test_a_thousand_config_set_notifications_apply_in_order(sock_path: str, kind: str) -> None:
    config: dict[str, Any] = {}
    applied: list[Any] = []
    methods = Methods()

    def apply(key: str, value: Any) -> None:
        applied.append(value)
        config[key] = value

    if kind == "sync":
        methods.add("config.set")(apply)
    elif kind == "blocking":
        methods.add("config.set", blocking=True)(apply)
    else:

        @methods.add("config.set")
        async def config_set(key: str, value: Any) -> None:
            await trio.lowlevel.checkpoint()
            apply(key, value)

    @methods.add("config.get")
    def config_get(key: str) -> Any:
        return config[key]

    async with serving(sock_path, methods), client(sock_path) as c:
        await c.send(
            lines(*(notification("config.set", ["level", i]) for i in range(1000)))
            + lines(request("config.get", ["level"], "get"))
        )
        assert await c.read_json() == {"jsonrpc": "2.0", "result": 999, "id": "get"}
    assert applied == list(range(1000))


async def test_slow_calls_on_one_connection_overlap(sock_path: str) -> None:
    """A waits for B, sent after it on the same connection: only concurrency lets both finish."""
    b_ran = trio.Event()
    active = 0
    most_active = 0
    methods = Methods()

    @methods.add
    async def a() -> str:
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        await b_ran.wait()
        active -= 1
        return "a"

    @methods.add
    async def b() -> str:
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        await trio.lowlevel.checkpoint()
        b_ran.set()
        active -= 1
        return "b"

    async with serving(sock_path, methods), client(sock_path) as c:
        await c.send(lines(request("a", rid="a"), request("b", rid="b")))
        first, second = await c.read_json(), await c.read_json()
    assert (first["id"], second["id"]) == ("b", "a")  # out of order: B answered first
    assert most_active == 2


async def test_blocking_calls_on_one_connection_overlap(sock_path: str) -> None:
    b_ran = threading.Event()
    methods = Methods()

    @methods.add(blocking=True)
    def a() -> bool:
        return b_ran.wait(TIMEOUT)  # False (a failure) unless b runs meanwhile

    @methods.add(blocking=True)
    def b() -> bool:
        b_ran.set()
        return True

    async with serving(sock_path, methods), client(sock_path) as c:
        await c.send(lines(request("a", rid="a"), request("b", rid="b")))
        answers = {(a := await c.read_json())["id"]: a["result"] for _ in range(2)}
    assert answers == {"a": True, "b": True}


def recording_methods(events: list[str]) -> Methods:
    """slow: async, yields until everything else is blocked; note/after: record and return."""
    methods = Methods()

    @methods.add
    async def slow() -> str:
        events.append("slow-start")
        await trio.testing.wait_all_tasks_blocked()
        events.append("slow-end")
        return "slow"

    @methods.add
    def note() -> None:
        events.append("note")

    @methods.add
    async def slow_note() -> None:
        events.append("note-start")
        await trio.testing.wait_all_tasks_blocked()
        events.append("note-end")

    @methods.add
    def after() -> str:
        events.append("after")
        return "after"

    @methods.add
    async def after_async() -> str:
        events.append("after")
        return "after"

    return methods


@pytest.mark.parametrize("fast_path", [True, False])
async def test_notification_waits_for_the_calls_before_it(sock_path: str, fast_path: bool) -> None:
    events: list[str] = []
    async with serving(sock_path, recording_methods(events), fast_path=fast_path), client(sock_path) as c:
        await c.send(lines(request("slow", rid=1), notification("note"), request("after", rid=2)))
        ids = [(await c.read_json())["id"], (await c.read_json())["id"]]
    assert events == ["slow-start", "slow-end", "note", "after"]
    assert ids == [1, 2]


@pytest.mark.parametrize("after", ["after", "after_async"])
async def test_calls_after_a_notification_wait_for_it(sock_path: str, after: str) -> None:
    events: list[str] = []
    async with serving(sock_path, recording_methods(events)), client(sock_path) as c:
        await c.send(lines(notification("slow_note"), request(after, rid=1)))
        assert (await c.read_json())["result"] == "after"
    assert events == ["note-start", "note-end", "after"]


async def test_notification_inside_a_batch_is_a_barrier(sock_path: str) -> None:
    events: list[str] = []
    async with serving(sock_path, recording_methods(events)), client(sock_path) as c:
        await c.send(lines([request("slow", rid=1), notification("note"), request("after", rid=2)]))
        answer = await c.read_json()
    assert sorted(a["id"] for a in answer) == [1, 2]
    assert events == ["slow-start", "slow-end", "note", "after"]


async def test_connections_are_independent(sock_path: str) -> None:
    """A barrier on one connection does not hold another: conn2 releases conn1's slow call."""
    release = trio.Event()
    events: list[str] = []
    methods = Methods()

    @methods.add
    async def wait_release() -> str:
        await release.wait()
        events.append("released")
        return "ok"

    @methods.add
    def note() -> None:
        events.append("note")

    @methods.add
    def do_release() -> str:
        release.set()
        return "done"

    async with serving(sock_path, methods), client(sock_path) as c1, client(sock_path) as c2:
        await c1.send(lines(request("wait_release", rid=1), notification("note")))
        await trio.testing.wait_all_tasks_blocked()
        assert events == []  # conn1's notification waits behind its call
        assert (await c2.call("do_release", rid=2))["result"] == "done"
        assert (await c1.read_json())["result"] == "ok"
        assert (await c1.call("do_release", rid=3))["id"] == 3
    assert events == ["released", "note"]


@pytest.mark.parametrize("mode", ["serial", "concurrent"])
async def test_serial_mode_runs_one_message_at_a_time(sock_path: str, mode: str) -> None:
    events: list[str] = []
    async with serving(sock_path, recording_methods(events), mode=mode), client(sock_path) as c:
        await c.send(lines(request("slow", rid=1), request("after", rid=2)))
        ids = [(await c.read_json())["id"], (await c.read_json())["id"]]
    if mode == "serial":
        assert events == ["slow-start", "slow-end", "after"]
        assert ids == [1, 2]
    else:
        assert events.index("after") < events.index("slow-end")
        assert ids == [2, 1]


def test_serial_mode_name_is_checked() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        Server(Methods(), mode="parallel")  # type: ignore[arg-type]


# -- how handlers run ------------------------------------------------------------------------------


async def test_async_handlers_are_awaited(sock_path: str) -> None:
    methods = Methods()

    @methods.add
    async def compute(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x * 2

    @methods.add
    async def fails() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("nope")

    async with serving(sock_path, methods), client(sock_path) as c:
        assert (await c.call("compute", [21]))["result"] == 42
        answer = await c.call("fails", rid=2)
        assert answer["error"]["code"] == -32603
        assert "nope" not in json.dumps(answer)


async def test_blocking_handlers_run_in_a_worker_thread_sync_ones_on_the_loop(sock_path: str) -> None:
    loop_thread = threading.get_ident()
    methods = Methods()

    @methods.add
    def on_loop() -> int:
        return threading.get_ident()

    @methods.add(blocking=True)
    def in_thread() -> int:
        return threading.get_ident()

    @methods.add
    async def awaited() -> int:
        return threading.get_ident()

    async with serving(sock_path, methods), client(sock_path) as c:
        assert (await c.call("on_loop"))["result"] == loop_thread
        assert (await c.call("awaited"))["result"] == loop_thread
        worker = (await c.call("in_thread"))["result"]
    assert worker != loop_thread


@pytest.mark.parametrize("kind", ["sync", "async", "blocking"])
@pytest.mark.parametrize("fast_path", [True, False])
async def test_current_context_inside_handlers(sock_path: str, kind: str, fast_path: bool) -> None:
    seen: list[Any] = []
    methods = Methods()

    def describe() -> dict[str, Any]:
        ctx = current_context()
        seen.append(ctx)
        assert ctx.peer is not None
        return {
            "method": ctx.method,
            "id": ctx.request_id,
            "notification": ctx.is_notification,
            "peer": [ctx.peer.uid, ctx.peer.gid, ctx.peer.pid],
        }

    if kind == "sync":
        methods.add("who.am.i")(describe)
    elif kind == "blocking":
        methods.add("who.am.i", blocking=True)(describe)
    else:

        @methods.add("who.am.i")
        async def who() -> dict[str, Any]:
            await trio.lowlevel.checkpoint()
            return describe()

    async with serving(sock_path, methods, fast_path=fast_path) as server, client(sock_path) as c:
        answer = await c.call("who.am.i", rid="ctx-1")
        await c.send(lines(notification("who.am.i")))
        await c.call("who.am.i", rid=2**70)
    assert answer["result"] == {
        "method": "who.am.i",
        "id": "ctx-1",
        "notification": False,
        "peer": [os.getuid(), os.getgid(), os.getpid()],
    }
    kinds = [(ctx.request_id, ctx.is_notification) for ctx in seen]
    assert kinds == [("ctx-1", False), (None, True), (2**70, False)]
    assert all(ctx.server is server for ctx in seen)


def test_current_context_outside_a_handler() -> None:
    with pytest.raises(LookupError, match="outside"):
        current_context()


# -- limits ----------------------------------------------------------------------------------------


async def test_max_in_flight_applies_back_pressure(sock_path: str) -> None:
    release = trio.Event()
    entered = 0
    methods = Methods()

    @methods.add
    async def hold(i: int) -> int:
        nonlocal entered
        entered += 1
        await release.wait()
        return i

    @methods.add
    def ping() -> str:
        return "pong"

    limits = Limits(max_in_flight=2, shutdown_grace=2)
    async with serving(sock_path, methods, limits=limits) as server, client(sock_path) as c:
        await c.send(lines(*(request("hold", [i], i) for i in range(5)), request("ping", rid="p")))
        await trio.testing.wait_all_tasks_blocked()
        assert entered == 2  # the reader stopped: two run, the rest wait unread
        assert server.stats.in_flight == 2
        assert nothing_to_read(c)  # not even the ping behind them was answered
        release.set()
        answers = [await c.read_json() for _ in range(6)]
    assert sorted(str(a["id"]) for a in answers) == ["0", "1", "2", "3", "4", "p"]
    assert entered == 5


async def test_idle_timeout_closes_an_idle_connection(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    limits = Limits(idle_timeout=1.0, shutdown_grace=2)
    async with serving(sock_path, basic_methods(), limits=limits) as server:
        async with client(sock_path) as idle:
            assert await idle.read_to_eof() == b""  # the server closed it
        async with client(sock_path) as busy:  # a call running past the timeout keeps it open
            assert (await busy.call("nap", [3.0]))["result"] == 3.0
            assert (await busy.call("ping", rid=2))["result"] == "pong"
        assert server.stats.connections_total == 2


async def test_handler_timeout(sock_path: str) -> None:
    methods = Methods()
    stuck = threading.Event()

    @methods.add(timeout=0.1)
    async def forever() -> None:
        await trio.sleep_forever()

    @methods.add
    async def default_limit() -> None:
        await trio.sleep_forever()

    @methods.add(blocking=True, timeout=0.1)
    def blocked() -> None:
        stuck.wait(TIMEOUT)

    limits = Limits(handler_timeout=0.2, shutdown_grace=2)
    try:
        async with serving(sock_path, methods, limits=limits), client(sock_path) as c:
            for name in ("forever", "default_limit", "blocked"):
                answer = await c.call(name, rid=name)
                assert answer["id"] == name
                assert answer["error"]["code"] == -32004
                assert answer["error"]["message"] == "Handler timed out"
    finally:
        stuck.set()


async def test_max_connections(sock_path: str) -> None:
    # One connection for everyone, one more reserved for root and the server's user (us).
    limits = Limits(max_connections=1, reserved_connections=1, shutdown_grace=2)
    async with (
        serving(sock_path, basic_methods(), limits=limits),
        client(sock_path) as first,
        client(sock_path) as reserved,
    ):
        assert (await first.call("ping"))["result"] == "pong"  # registered by now
        assert (await reserved.call("ping"))["result"] == "pong"
        async with client(sock_path) as second:
            answer = await second.read_json()
            assert answer["error"]["code"] == -32006
            assert answer["id"] is None
            assert await second.read_to_eof() == b""
        assert (await first.call("ping", rid=2))["result"] == "pong"


async def test_max_batch(sock_path: str) -> None:
    limits = Limits(max_batch=2, shutdown_grace=2)
    async with serving(sock_path, basic_methods(), limits=limits), client(sock_path) as c:
        await c.send(lines([request("ping", rid=i) for i in range(3)]))
        answer = await c.read_json()
        assert answer["error"]["code"] == -32001
        assert answer["id"] is None
        await c.send(lines([request("ping", rid=i) for i in range(2)]))
        assert len(await c.read_json()) == 2


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        Limits(max_in_flight=0)


# -- stats -----------------------------------------------------------------------------------------


async def test_stats_counters(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()) as server:
        async with client(sock_path) as c:
            await c.call("ping", rid=1)
            await c.call("nope", rid=2)  # an error
            await c.send(b"not json\n")
            await c.read_json()  # an error
            await c.send(lines(notification("echo", [1])))
            await c.call("nap", [0], rid=3)
            s = server.stats
            assert (s.calls, s.notifications, s.errors) == (3, 1, 2)
            assert (s.connections_open, s.connections_total, s.in_flight) == (1, 1, 0)
        async with client(sock_path) as c2:
            await c2.call("ping")
        with trio.fail_after(TIMEOUT):
            while server.stats.connections_open:  # the server notices the close
                await trio.testing.wait_all_tasks_blocked()
        assert server.stats.connections_total == 2
        snapshot = server.stats.snapshot()
        json.dumps(snapshot)  # JSON-ready


async def test_failed_notifications_are_counted(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()) as server, client(sock_path) as c:
        before = server.stats.snapshot()
        await c.send(lines(notification("crash")))
        assert (await c.call("ping"))["result"] == "pong"  # no answer came for the notification
        after = server.stats.snapshot()
    assert after["server"]["errors"] > before["server"]["errors"]


# -- stopping --------------------------------------------------------------------------------------


async def test_stop_finishes_in_flight_refuses_late_arrivals_and_removes_the_file(sock_path: str) -> None:
    release = trio.Event()
    methods = basic_methods()

    @methods.add
    async def hold() -> str:
        await release.wait()
        return "held"

    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(methods, limits=FAST).serve, sock_path)
        async with client(sock_path) as c:
            await c.send(lines(request("hold", rid="h")))
            await trio.testing.wait_all_tasks_blocked()
            server.stop()
            server.stop()  # idempotent
            answer = await c.call("ping", rid="late")
            assert answer["error"]["code"] == -32002
            assert answer["error"]["message"] == "Server shutting down"
            release.set()
            assert await c.read_json() == {"jsonrpc": "2.0", "result": "held", "id": "h"}
            assert await c.read_to_eof() == b""
    assert not exists(sock_path)


async def test_stop_cancels_what_outlives_the_grace_period(sock_path: str) -> None:
    methods = Methods()

    @methods.add
    async def forever() -> None:
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            limits = Limits(shutdown_grace=0.2)
            server: Server = await nursery.start(Server(methods, limits=limits).serve, sock_path)
            async with client(sock_path) as c:
                await c.send(lines(request("forever")))
                await trio.testing.wait_all_tasks_blocked()
                server.stop()
                await c.read_to_eof()
    assert not exists(sock_path)


async def test_cancelling_serve_removes_the_file(sock_path: str) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(Server(basic_methods()).serve, sock_path)
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
        nursery.cancel_scope.cancel()
    assert not exists(sock_path)


async def test_a_server_serves_once(sock_path: str) -> None:
    server = Server(basic_methods(), limits=FAST)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, sock_path)
        with pytest.raises(RuntimeError, match="serves once"):
            await server.serve(sock_path + "2")
        server.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_on_the_demo_finishes_in_flight_removes_socket_exits_0(demo: DemoProcess, signum: int) -> None:
    with LineClient(demo.path) as c:
        c.send(lines(request("sleep", [0.5], "slow"), request("ping", rid="p")))
        assert c.read_json() == {"jsonrpc": "2.0", "result": "pong", "id": "p"}  # sleep is running
        demo.proc.send_signal(signum)
        assert c.read_json() == {"jsonrpc": "2.0", "result": 0.5, "id": "slow"}
        assert c.read_to_eof() == b""
    assert demo.proc.wait(timeout=TIMEOUT) == 0  # a graceful exit, not death by the signal
    assert not os.path.exists(demo.path)


# -- serve_in_thread -------------------------------------------------------------------------------


def _threads() -> set[threading.Thread]:
    """Live threads, less trio's worker-thread cache (idle workers linger by design)."""
    return {t for t in threading.enumerate() if not t.name.startswith("Trio thread")}


def test_serve_in_thread_start_stop_idempotent_no_leaked_threads(sock_path: str) -> None:
    before = _threads()
    handle = serve_in_thread(sock_path, basic_methods(), limits=FAST)
    assert handle.running
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    with LineClient(sock_path) as c:
        assert c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}
        assert c.call("nap", [0.01], rid=2)["result"] == 0.01
    handle.stop()
    handle.stop()  # idempotent
    assert not handle.running
    assert not exists(sock_path)
    assert _threads() == before


def test_serve_in_thread_as_context_manager(sock_path: str) -> None:
    before = _threads()
    with serve_in_thread(sock_path, basic_methods(), limits=FAST) as handle, LineClient(sock_path) as c:
        assert c.call("ping")["result"] == "pong"
    assert not handle.running
    assert _threads() == before


def test_serve_in_thread_reports_why_it_cannot_start(sock_path: str) -> None:
    before = _threads()
    write_file(sock_path, "not a socket")
    with pytest.raises(ServerSetupError, match="not a socket"):
        serve_in_thread(sock_path, basic_methods())
    assert _threads() == before


def test_serve_in_thread_stop_with_a_call_in_flight(sock_path: str) -> None:
    handle = serve_in_thread(sock_path, basic_methods(), limits=FAST)
    with LineClient(sock_path) as c:
        c.send(lines(request("nap", [0.3], "slow"), request("ping", rid="p")))
        assert c.read_json()["id"] == "p"
        handle.stop()  # waits for the call to finish
        assert c.read_json() == {"jsonrpc": "2.0", "result": 0.3, "id": "slow"}
    assert not handle.running


# -- the socket file -------------------------------------------------------------------------------


async def test_a_live_socket_is_not_stolen(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        inode = os.stat(sock_path).st_ino
        with pytest.raises(AddressInUseError, match="another server is already listening on"):
            await Server(basic_methods()).serve(sock_path)
        assert os.stat(sock_path).st_ino == inode
        assert (await c.call("ping"))["result"] == "pong"
        async with client(sock_path) as c2:  # new connections still reach the first server
            assert (await c2.call("ping"))["result"] == "pong"


async def test_a_stale_socket_file_is_replaced(sock_path: str) -> None:
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(sock_path)
    stale.close()  # the file stays; nothing listens
    with pytest.raises(ConnectionRefusedError), socket.socket(socket.AF_UNIX) as probe:
        probe.connect(sock_path)
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        assert (await c.call("ping"))["result"] == "pong"


@pytest.mark.parametrize("kind", ["file", "directory", "symlink", "fifo"])
async def test_a_path_that_is_not_a_socket_is_never_touched(sock_path: str, sock_dir: str, kind: str) -> None:
    target = os.path.join(sock_dir, "target")
    write_file(target, "precious")
    if kind == "file":
        write_file(sock_path, "precious")
    elif kind == "directory":
        os.mkdir(sock_path)
    elif kind == "symlink":
        os.symlink(target, sock_path)
    else:
        os.mkfifo(sock_path)
    before = os.lstat(sock_path)
    with pytest.raises(ServerSetupError, match="not a socket"):
        await Server(basic_methods()).serve(sock_path)
    after = os.lstat(sock_path)
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
    if kind == "file":
        assert read_file(sock_path) == "precious"
    assert sorted(os.listdir(sock_dir)) == ["s.sock", "target"]  # no temporary left behind


async def test_socket_file_mode_is_0600_right_after_start(sock_path: str) -> None:
    old = os.umask(0)  # even with a permissive umask
    try:
        async with serving(sock_path, basic_methods()):
            st = os.stat(sock_path)
            assert stat.S_ISSOCK(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o600
            assert st.st_uid == os.getuid()
    finally:
        os.umask(old)


async def test_socket_file_mode_is_configurable(sock_path: str) -> None:
    async with serving(sock_path, basic_methods(), socket_mode=0o660):
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o660


async def test_the_file_is_removed_on_stop(sock_path: str, sock_dir: str) -> None:
    async with serving(sock_path, basic_methods()):
        assert os.listdir(sock_dir) == ["s.sock"]  # only the final name: no temporary left
    assert os.listdir(sock_dir) == []


@pytest.mark.parametrize("replacement", ["file", "socket"])
async def test_the_file_is_not_removed_on_stop_if_no_longer_ours(sock_path: str, replacement: str) -> None:
    other: socket.socket | None = None
    async with serving(sock_path, basic_methods()):
        os.unlink(sock_path)
        if replacement == "file":
            write_file(sock_path, "someone else's")
        else:
            other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            other.bind(sock_path)
            other.listen()
        inode = os.lstat(sock_path).st_ino
    try:
        assert os.lstat(sock_path).st_ino == inode  # still there, untouched
    finally:
        if other is not None:
            other.close()


async def test_long_socket_paths(sock_dir: str) -> None:
    """Past sun_path's 107 bytes the server binds through /proc/self/fd (specs/protocol.md §1)."""
    from jrpc_unix._address import socket_name

    deep = os.path.join(sock_dir, "d" * 100)
    os.mkdir(deep)
    path = os.path.join(deep, "ctl.sock")
    assert len(path) > 107
    async with serving(path, basic_methods()):
        assert stat.S_ISSOCK(os.stat(path).st_mode)
        with socket_name(path) as name:
            async with client(name) as c:
                assert (await c.call("ping"))["result"] == "pong"
    assert not exists(path)


async def test_a_path_of_exactly_107_bytes(sock_dir: str) -> None:
    deep = os.path.join(sock_dir, "d" * (107 - len(sock_dir) - 3))
    os.mkdir(deep)
    path = os.path.join(deep, "s")
    assert len(path) == 107
    with socket.socket(socket.AF_UNIX) as s:  # the kernel accepts it
        s.bind(path)
    os.unlink(path)
    async with serving(path, basic_methods()), client(path) as c:
        assert (await c.call("ping"))["result"] == "pong"


async def test_response_objects_over_the_socket(sock_path: str) -> None:
    methods = Methods()

    @methods.add
    def good() -> Response:
        return Response.ok({"a": 1})

    @methods.add
    def bad() -> Response:
        return Response.fail("broken", code=17, data=[1])

    @methods.add
    def weird() -> object:
        return object()

    async with serving(sock_path, methods), client(sock_path) as c:
        assert (await c.call("good"))["result"] == {"a": 1}
        assert (await c.call("bad", rid=2))["error"] == {"code": 17, "message": "broken", "data": [1]}
        answer = await c.call("weird", rid=3)
        assert answer["error"]["code"] == -32603
        assert answer["id"] == 3
        assert (await c.call("good", rid=4))["id"] == 4  # the connection survived


# -- more of specs/protocol.md ------------------------------------------------------------------------


async def test_several_slow_calls_run_at_once(sock_path: str) -> None:
    """Three sleeping calls on one connection: all three are inside their handler together."""
    active = 0
    most_active = 0
    all_in = trio.Event()
    methods = Methods()

    @methods.add
    async def sleepy(i: int) -> int:
        nonlocal active, most_active
        active += 1
        most_active = max(most_active, active)
        if active == 3:
            all_in.set()
        with trio.move_on_after(TIMEOUT):  # serialised calls would sit here, then fail below
            await all_in.wait()
        await trio.sleep(0.05)
        active -= 1
        return i

    async with serving(sock_path, methods), client(sock_path) as c:
        await c.send(lines(*(request("sleepy", [i], i) for i in range(3))))
        ids = sorted([(await c.read_json())["id"] for _ in range(3)])
    assert ids == [0, 1, 2]
    assert most_active == 3


async def test_invalid_params_over_the_socket(sock_path: str) -> None:
    async with serving(sock_path, basic_methods()), client(sock_path) as c:
        answer = await c.call("echo", [1, 2, 3], rid="p")
        assert answer["id"] == "p"
        assert answer["error"]["code"] == -32602
        assert answer["error"]["message"] == "Invalid params"
        assert isinstance(answer["error"]["data"], str)
        answer = await c.call("echo", {"y": 1}, rid="q")
        assert answer["error"]["code"] == -32602


async def test_failing_notifications_never_get_an_answer(sock_path: str) -> None:
    methods = basic_methods()

    @methods.add
    def refuse() -> Response:
        return Response.fail("no", code=3)

    @methods.add
    async def crash_async() -> None:
        raise RuntimeError("async crash")

    @methods.add(blocking=True)
    def crash_blocking() -> None:
        raise RuntimeError("blocking crash")

    @methods.add
    def unserializable() -> object:
        return object()

    async with serving(sock_path, methods), client(sock_path) as c:
        await c.send(
            lines(
                notification("crash"),
                notification("crash_async"),
                notification("crash_blocking"),
                notification("refuse"),
                notification("no.such.method"),
                notification("echo", [1, 2, 3]),  # bad params
                notification("unserializable"),
                [notification("crash"), notification("no.such.method")],
                request("ping", rid="next"),
            )
        )
        assert await c.read_json() == {"jsonrpc": "2.0", "result": "pong", "id": "next"}
        await c.send_eof()
        assert await c.read_to_eof() == b""


async def test_slow_reader_gets_back_pressure(sock_path: str) -> None:
    """A client that sends much and reads nothing: the server stops reading from it.

    Answers come from tasks (async handler), so the reader is not itself stuck writing; only
    ``max_pending_output`` stops it from reading on and queueing answers without bound.
    """
    methods = Methods()

    @methods.add
    async def blob(i: int) -> str:
        await trio.lowlevel.checkpoint()
        return "x" * 500

    payload = lines(*(request("blob", [i], i) for i in range(20_000)))  # ~1 MB in, ~10 MB out
    limits = Limits(max_pending_output=64 * 1024, shutdown_grace=2)
    sent = trio.Event()

    async def send_all(c: TrioLineClient) -> None:
        await c.send(payload)
        sent.set()

    async with (
        serving(sock_path, methods, limits=limits),
        client(sock_path) as c,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(send_all, c)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()  # the server stopped reading: our send is stuck
        seen = 0
        with trio.fail_after(TIMEOUT):
            while seen < 20_000:
                await c.readline()
                seen += 1
            await sent.wait()


async def test_socket_group_option(sock_path: str) -> None:
    import grp

    group = grp.getgrgid(os.getgid()).gr_name
    async with serving(sock_path, basic_methods(), socket_group=group, socket_mode=0o660):
        st = os.stat(sock_path)
        assert st.st_gid == os.getgid()
        assert stat.S_IMODE(st.st_mode) == 0o660


async def test_a_socket_name_too_long_is_a_clear_error(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "n" * 200)
    with pytest.raises(ServerSetupError, match="too long"):
        await Server(basic_methods()).serve(path)
    assert os.listdir(sock_dir) == []


# -- differential over the socket: the connection's inline fast path vs the general path -------------


def differential_methods() -> Methods:
    methods = Methods()

    @methods.add
    def ping() -> str:
        return "pong"

    @methods.add
    def echo(x: Any) -> Any:
        return x

    @methods.add
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    @methods.add("sum")
    def sum_(*numbers: int) -> int:
        return sum(numbers)

    @methods.add
    def kw(a: int, /, b: int = 2, *, c: int = 3) -> list[int]:
        return [a, b, c]

    @methods.add
    def fail(message: str) -> Response:
        return Response.fail(message, code=7, data={"m": message})

    @methods.add
    def crash() -> None:
        raise RuntimeError("crash")

    @methods.add
    def nan() -> float:
        return float("nan")

    @methods.add
    async def async_echo(x: Any = None) -> Any:
        await trio.lowlevel.checkpoint()
        return x

    return methods


big_ints = st.integers(-(2**70), 2**70)
json_leaf = st.none() | st.booleans() | big_ints | st.floats(allow_nan=False) | st.text(max_size=3)
ids = big_ints | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3) | st.none()
METHOD_NAMES = [*differential_methods(), "nope", "rpc.x"]
PARAM_NAMES = ["x", "a", "b", "c", "minuend", "subtrahend", "message", "z"]


@st.composite
def wire_requests(draw: st.DrawFn) -> Any:
    obj: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0"]))}
    obj["method"] = draw(st.sampled_from(METHOD_NAMES))
    small = st.integers(-5, 5) | st.text(max_size=2)
    params = draw(
        st.none()
        | st.lists(small, max_size=4)
        | st.dictionaries(st.sampled_from(PARAM_NAMES), small, max_size=3)
        | json_leaf
    )
    if params is not None:
        obj["params"] = params
    if draw(st.integers(0, 3)):
        obj["id"] = draw(ids | st.booleans())
    if not draw(st.integers(0, 10)):
        obj["extra"] = 1
    return obj


message_lists = st.lists(wire_requests() | st.lists(wire_requests(), max_size=4), min_size=1, max_size=12)


def normalized(raw: bytes) -> list[str]:
    """Answers as sorted canonical JSON, with the random error_id of -32603 masked."""

    def mask(answer: Any) -> Any:
        if isinstance(answer, list):
            return sorted((mask(a) for a in answer), key=json.dumps)
        err = answer.get("error")
        if isinstance(err, dict) and isinstance(err.get("data"), dict) and "error_id" in err["data"]:
            err["data"]["error_id"] = "*"
        return answer

    return sorted(json.dumps(mask(json.loads(line)), sort_keys=True) for line in raw.splitlines())


async def exchange(path: str, payload: bytes) -> bytes:
    async with client(path) as c:
        await c.send(payload)
        await c.send_eof()
        return await c.read_to_eof()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=message_lists)
async def test_fast_path_and_general_path_answer_alike_over_the_socket(messages: list[Any]) -> None:
    payload = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
    with short_tmpdir() as d:
        fast_path, slow_path = os.path.join(d, "fast.sock"), os.path.join(d, "slow.sock")
        async with (
            serving(fast_path, differential_methods(), fast_path=True) as fast_server,
            serving(slow_path, differential_methods(), fast_path=False) as slow_server,
        ):
            fast = await exchange(fast_path, payload)
            slow = await exchange(slow_path, payload)
            assert counts(fast_server) == counts(slow_server)  # the fast path counts alike too
    assert normalized(fast) == normalized(slow)


def counts(server: Server) -> dict[str, Any]:
    """The request counts in ``rpc.stats`` (latency figures reduced to how many were recorded)."""
    snapshot = server.stats.snapshot()
    figures = {k: v for k, v in snapshot["server"].items() if k not in ("uptime_s", "connections")}
    for name, m in snapshot["methods"].items():
        figures[name] = (m["calls"], m["notifications"], m["errors"], m["latency_us"]["count"])
    return figures


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("method", ["echo", "async_echo"])
@pytest.mark.parametrize(
    "raw_id",
    [
        b"0",
        b"-1",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"123456789012345678901234567890",
        b"1.5",
        b"1e300",
        b'"x"',
        b'""',
        b'"\\u00e9"',
        b"null",
    ],
)
async def test_exact_id_echo_over_the_socket(
    sock_path: str, fast_path: bool, method: str, raw_id: bytes
) -> None:
    line = b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":[1],"id":' + raw_id + b"}\n"
    async with serving(sock_path, differential_methods(), fast_path=fast_path), client(sock_path) as c:
        await c.send(line)
        answer = json.loads(await c.readline())
    want = json.loads(raw_id)
    assert answer == {"jsonrpc": "2.0", "result": 1, "id": want}
    assert type(answer["id"]) is type(want)


async def test_spec_examples_one_byte_per_write(sock_path: str) -> None:
    """Framing over a real socket, however the bytes are cut: every example, one byte per send."""
    async with serving(sock_path, demo_module().methods):
        for _, req, want in SPEC_EXAMPLES:
            async with client(sock_path) as c:
                for byte in req.encode() + b"\n":
                    await c.send(bytes([byte]))
                await c.send_eof()
                raw = await c.read_to_eof()
            if want is None:
                assert raw == b""
            else:
                assert_answer(json.loads(raw), want)


async def test_stop_closes_idle_connections_without_waiting_for_the_grace_period(sock_path: str) -> None:
    limits = Limits(shutdown_grace=3600)  # were idle connections waited for, fail_after would fire
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(Server(basic_methods(), limits=limits).serve, sock_path)
            async with client(sock_path) as idle, client(sock_path) as used:
                assert (await used.call("ping"))["result"] == "pong"
                server.stop()
                assert await idle.read_to_eof() == b""
                assert await used.read_to_eof() == b""
    assert not exists(sock_path)


async def test_internal_error_is_logged_with_its_correlation_id(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    methods = Methods()

    @methods.add
    def explode() -> None:
        raise KeyError("the secret key name")

    @methods.add(blocking=True)
    def explode_in_thread() -> None:
        raise ValueError("thread secret")

    async with serving(sock_path, methods), client(sock_path) as c:
        for name, secret in (("explode", "the secret key name"), ("explode_in_thread", "thread secret")):
            await c.send(lines(request(name, rid=name)))
            raw = await c.readline()
            answer = json.loads(raw)
            assert answer["error"]["code"] == -32603
            assert answer["error"]["message"] == "Internal error"
            assert secret.encode() not in raw
            assert b"Traceback" not in raw
            error_id = answer["error"]["data"]["error_id"]
            # Logged off the event loop (jrpc_unix._server.logqueue): it arrives a moment later.
            records = await _logged(caplog, error_id)
            assert len(records) == 1
            assert records[0].exc_info is not None
            assert secret in str(records[0].exc_info[1])


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    def found() -> list[logging.LogRecord]:
        return [r for r in caplog.records if text in r.getMessage()]

    await trio.to_thread.run_sync(wait_for, found, f"a log record with {text!r}")
    return found()


async def test_current_context_in_batch_members(sock_path: str) -> None:
    seen: list[Any] = []
    methods = Methods()

    @methods.add
    def who() -> str:
        ctx = current_context()
        seen.append((ctx.method, ctx.request_id, ctx.is_notification))
        return ctx.method

    @methods.add
    async def who_async() -> str:
        ctx = current_context()
        seen.append((ctx.method, ctx.request_id, ctx.is_notification))
        return ctx.method

    async with serving(sock_path, methods), client(sock_path) as c:
        await c.send(lines([request("who", rid=1), notification("who"), request("who_async", rid=2)]))
        answer = await c.read_json()
    assert sorted(a["id"] for a in answer) == [1, 2]
    assert sorted(seen, key=repr) == sorted(
        [("who", 1, False), ("who", None, True), ("who_async", 2, False)], key=repr
    )


async def test_notification_waits_for_a_blocking_call_before_it(sock_path: str) -> None:
    events: list[str] = []
    methods = recording_methods(events)

    @methods.add(blocking=True)
    def slow_thread() -> str:
        events.append("slow-start")
        trio.from_thread.run(trio.testing.wait_all_tasks_blocked)  # the loop gets every chance
        events.append("slow-end")
        return "slow"

    async with serving(sock_path, methods), client(sock_path) as c:
        await c.send(lines(request("slow_thread", rid=1), notification("note"), request("after", rid=2)))
        ids = [(await c.read_json())["id"], (await c.read_json())["id"]]
    assert events == ["slow-start", "slow-end", "note", "after"]
    assert ids == [1, 2]
