"""When calls start (jrpc_unix._server.schedule, specs/protocol.md §4): overlap up to
``max_in_flight``, notifications as barriers, serial mode, the waiting queue, rpc.cancel.

The first part drives a :class:`Schedule` directly (a connection over a socketpair, no listener:
``helpers.server.connection_pair``), on trio's virtual clock, and looks inside: what runs, what
waits, what the cancel registry holds. The second part proves the same orderings end to end,
over a real listening socket, with handlers that record events and wait on each other.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import (
    TIMEOUT,
    lines,
    notification,
    request,
    serving,
)
from helpers.server import connected, nothing_to_read

from jrpc_unix import (
    Limits,
    Methods,
)


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

    async with serving(sock_path, methods), connected(sock_path) as c:
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

    async with serving(sock_path, methods), connected(sock_path) as c:
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

    async with serving(sock_path, methods), connected(sock_path) as c:
        await c.send(lines(request("a", rid="a"), request("b", rid="b")))
        answers = {(a := await c.read_json())["id"]: a["result"] for _ in range(2)}
    assert answers == {"a": True, "b": True}


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

    async with serving(sock_path, methods), connected(sock_path) as c:
        await c.send(lines(*(request("sleepy", [i], i) for i in range(3))))
        ids = sorted([(await c.read_json())["id"] for _ in range(3)])
    assert ids == [0, 1, 2]
    assert most_active == 3


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
    async with serving(sock_path, recording_methods(events), fast_path=fast_path), connected(sock_path) as c:
        await c.send(lines(request("slow", rid=1), notification("note"), request("after", rid=2)))
        ids = [(await c.read_json())["id"], (await c.read_json())["id"]]
    assert events == ["slow-start", "slow-end", "note", "after"]
    assert ids == [1, 2]


@pytest.mark.parametrize("after", ["after", "after_async"])
async def test_calls_after_a_notification_wait_for_it(sock_path: str, after: str) -> None:
    events: list[str] = []
    async with serving(sock_path, recording_methods(events)), connected(sock_path) as c:
        await c.send(lines(notification("slow_note"), request(after, rid=1)))
        assert (await c.read_json())["result"] == "after"
    assert events == ["note-start", "note-end", "after"]


async def test_notification_inside_a_batch_is_a_barrier(sock_path: str) -> None:
    events: list[str] = []
    async with serving(sock_path, recording_methods(events)), connected(sock_path) as c:
        await c.send(lines([request("slow", rid=1), notification("note"), request("after", rid=2)]))
        answer = await c.read_json()
    assert sorted(a["id"] for a in answer) == [1, 2]
    assert events == ["slow-start", "slow-end", "note", "after"]


async def test_notification_waits_for_a_blocking_call_before_it(sock_path: str) -> None:
    events: list[str] = []
    methods = recording_methods(events)

    @methods.add(blocking=True)
    def slow_thread() -> str:
        events.append("slow-start")
        trio.from_thread.run(trio.testing.wait_all_tasks_blocked)  # the loop gets every chance
        events.append("slow-end")
        return "slow"

    async with serving(sock_path, methods), connected(sock_path) as c:
        await c.send(lines(request("slow_thread", rid=1), notification("note"), request("after", rid=2)))
        ids = [(await c.read_json())["id"], (await c.read_json())["id"]]
    assert events == ["slow-start", "slow-end", "note", "after"]
    assert ids == [1, 2]


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

    async with serving(sock_path, methods), connected(sock_path) as c1, connected(sock_path) as c2:
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
    async with serving(sock_path, recording_methods(events), mode=mode), connected(sock_path) as c:
        await c.send(lines(request("slow", rid=1), request("after", rid=2)))
        ids = [(await c.read_json())["id"], (await c.read_json())["id"]]
    if mode == "serial":
        assert events == ["slow-start", "slow-end", "after"]
        assert ids == [1, 2]
    else:
        assert events.index("after") < events.index("slow-end")
        assert ids == [2, 1]


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
    async with serving(sock_path, methods, limits=limits) as server, connected(sock_path) as c:
        await c.send(lines(*(request("hold", [i], i) for i in range(5)), request("ping", rid="p")))
        await trio.testing.wait_all_tasks_blocked()
        assert entered == 2  # the reader stopped: two run, the rest wait unread
        assert server.stats.in_flight == 2
        assert nothing_to_read(c)  # not even the ping behind them was answered
        release.set()
        answers = [await c.read_json() for _ in range(6)]
    assert sorted(str(a["id"]) for a in answers) == ["0", "1", "2", "3", "4", "p"]
    assert entered == 5
