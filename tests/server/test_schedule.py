"""When calls start (jrpc_unix._server.schedule, specs/protocol.md §4): overlap up to
``max_in_flight``, notifications as barriers, serial mode, the waiting queue, rpc.cancel.

The first part drives a :class:`Schedule` directly (a connection over a socketpair, no listener:
``helpers.server.connection_pair``), on trio's virtual clock, and looks inside: what runs, what
waits, what the cancel registry holds. The second part proves the same orderings end to end,
over a real listening socket, with handlers that record events and wait on each other.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import (
    TIMEOUT,
    TrioLineClient,
    lines,
    notification,
    request,
    serving,
)
from helpers.server import connected, connection_pair, nothing_to_read

from jrpc_unix import Limits, Methods
from jrpc_unix._errors import ErrorCode
from jrpc_unix._server.execute import CancelRegistry
from jrpc_unix._service.dispatch import Dispatcher, Invocation
from jrpc_unix._wire.messages import Request, error_answer


class Gated:
    """Handlers that record when they start and end, and wait for their gate to open."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.gates: dict[str, trio.Event] = {}
        m = self.methods = Methods()

        @m.add
        async def hold(name: str) -> str:
            self.order.append(f"start {name}")
            await self.gate(name).wait()
            self.order.append(f"end {name}")
            return name

        @m.add(run_to_completion=True)
        async def keep(name: str) -> str:
            return await hold(name)

        @m.add("hold_note")
        async def hold_note(name: str) -> None:  # an async notification: a barrier that waits
            await hold(name)

        @m.add
        def note(name: str) -> None:
            self.order.append(f"note {name}")

        @m.add
        def ping() -> str:
            self.order.append("ping")
            return "pong"

    def gate(self, name: str) -> trio.Event:
        return self.gates.setdefault(name, trio.Event())

    def open(self, *names: str) -> None:
        for name in names:
            self.gate(name).set()


async def answers(c: TrioLineClient, n: int) -> list[tuple[Any, Any]]:
    """The next ``n`` answers as (id, result or error code), in the order they came."""
    out = []
    for _ in range(n):
        a = await c.read_json()
        out.append((a["id"], a["result"] if "result" in a else a["error"]["code"]))
    return out


# -- the schedule of one connection, looked at from inside (no listener, virtual clock) -------------


async def test_calls_overlap_up_to_max_in_flight_and_the_rest_wait_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gated = Gated()
    async with connection_pair(gated.methods, limits=Limits(max_in_flight=2)) as pair:
        await pair.client.send(lines(*(request("hold", [n], n) for n in "abcde")))
        await trio.testing.wait_all_tasks_blocked()
        assert pair.schedule.in_flight == pair.server.stats.in_flight == 2
        assert [w.req.id for w in pair.schedule.queue] == ["c", "d", "e"]  # type: ignore[union-attr]
        assert sorted(gated.order) == ["start a", "start b"]  # (tasks started together: either first)
        gated.open("b")  # b's slot goes to c, the first waiting
        assert await answers(pair.client, 1) == [("b", "b")]
        await trio.testing.wait_all_tasks_blocked()
        assert gated.order[-1] == "start c"
        gated.open("a", "c", "d", "e")
        assert sorted(await answers(pair.client, 4)) == [(n, n) for n in "acde"]
        await trio.testing.wait_all_tasks_blocked()
        assert pair.schedule.idle  # (d and e started in order, but run at once: either may go first)
        assert sorted(e for e in gated.order if e.startswith("start")) == [f"start {n}" for n in "abcde"]


async def test_a_notification_is_a_barrier_both_ways(autojump_clock: trio.testing.MockClock) -> None:
    gated = Gated()
    async with connection_pair(gated.methods) as pair:
        await pair.client.send(
            lines(request("hold", ["a"], 1), notification("note", ["n"]), request("ping", rid=2))
        )
        await trio.testing.wait_all_tasks_blocked()
        assert pair.schedule.in_flight == 1
        assert len(pair.schedule.queue) == 2  # the notification waits for a; ping waits for it
        assert gated.order == ["start a"]
        gated.open("a")
        assert await answers(pair.client, 2) == [(1, "a"), (2, "pong")]
        assert gated.order == ["start a", "end a", "note n", "ping"]


async def test_an_async_barrier_runs_at_the_head_of_the_queue(autojump_clock: trio.testing.MockClock) -> None:
    gated = Gated()
    async with connection_pair(gated.methods) as pair:
        await pair.client.send(lines(notification("hold_note", ["n"]), request("ping", rid=1)))
        await trio.testing.wait_all_tasks_blocked()
        assert gated.order == ["start n"]
        assert pair.schedule.in_flight == 0  # run by the queue's own task, not counted in flight
        assert len(pair.schedule.queue) == 2  # it stays at the head while it runs
        gated.open("n")
        assert await answers(pair.client, 1) == [(1, "pong")]
        assert gated.order == ["start n", "end n", "ping"]


async def test_serial_mode_makes_every_message_a_barrier(autojump_clock: trio.testing.MockClock) -> None:
    gated = Gated()
    async with connection_pair(gated.methods, mode="serial") as pair:
        await pair.client.send(lines(request("hold", ["a"], 1), request("hold", ["b"], 2)))
        await trio.testing.wait_all_tasks_blocked()
        assert gated.order == ["start a"]
        gated.open("b")  # b may go, but only after a
        await trio.testing.wait_all_tasks_blocked()
        assert gated.order == ["start a"]
        gated.open("a")
        assert await answers(pair.client, 2) == [(1, "a"), (2, "b")]


async def test_rpc_cancel_passes_the_queue_and_empties_the_cancel_registry(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Two calls share id 7 (ids are the client's): rpc.cancel stops the running one and answers
    the waiting one without starting it; the registry of running calls is empty afterwards."""
    gated = Gated()
    async with connection_pair(gated.methods, limits=Limits(max_in_flight=1)) as pair:
        await pair.client.send(lines(request("hold", ["a"], 7), request("hold", ["b"], 7)))
        await trio.testing.wait_all_tasks_blocked()
        assert pair.schedule.executor.running  # a, registered under its id
        await pair.client.send(lines(request("rpc.cancel", {"id": 7}, "c")))
        got = await answers(pair.client, 3)
        assert sorted(map(repr, got)) == sorted(map(repr, [(7, -32005), (7, -32005), ("c", True)]))
        assert gated.order == ["start a"]  # b never started
        assert not pair.schedule.executor.running
        assert pair.server.stats.rejected_requests["cancelled"] == 2


async def test_reading_pauses_while_the_queue_is_full(autojump_clock: trio.testing.MockClock) -> None:
    gated = Gated()
    limits = Limits(max_in_flight=1, max_queued_requests=4)
    async with connection_pair(gated.methods, limits=limits) as pair:
        for i in range(10):  # one line per read: the bound is checked between reads
            await pair.client.send(lines(request("hold", ["all"], i)))
            await trio.testing.wait_all_tasks_blocked()
        assert pair.schedule.full
        assert len(pair.schedule.queue) == 4  # 1 runs, 4 wait, 5 are still in the socket
        assert pair.conn.reads == 5
        gated.open("all")
        assert [i for i, _ in await answers(pair.client, 10)] == list(range(10))


async def test_stop_answers_what_waits_and_lets_what_runs_finish(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gated = Gated()
    async with connection_pair(gated.methods, limits=Limits(max_in_flight=1)) as pair:
        await pair.client.send(
            lines(request("hold", ["a"], 1), request("hold", ["b"], 2), notification("note"))
        )
        await trio.testing.wait_all_tasks_blocked()
        pair.server.stop()
        assert not pair.schedule.queue
        assert await answers(pair.client, 1) == [(2, -32002)]  # the notification: counted, unanswered
        assert pair.server.stats.rejected_requests["shutting_down"] == 2
        gated.open("a")
        assert await answers(pair.client, 1) == [(1, "a")]
        assert await pair.client.read_to_eof() == b""  # settled: the connection stops reading
    assert gated.order == ["start a", "end a"]


async def test_a_leaving_peer_cancels_all_but_notifications_and_run_to_completion_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    gated = Gated()
    async with connection_pair(gated.methods) as pair:
        await pair.client.send(
            lines(request("hold", ["a"], 1), request("keep", ["k"], 2), notification("hold_note", ["n"]))
        )
        await trio.testing.wait_all_tasks_blocked()
        await pair.client.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert pair.conn.gone
        assert sorted(gated.order) == ["start a", "start k"]  # a was cancelled; k runs on, n waits
        assert pair.server.stats.rejected_requests["cancelled"] == 1
        assert pair.server.stats.connections_detached == 1  # running on for nobody
        gated.open("k", "n")
        await trio.testing.wait_all_tasks_blocked()
        assert gated.order[2:] == ["end k", "start n", "end n"]  # the barrier still in its turn
        assert pair.server.stats.connections_detached == 0


# -- the waiting queue (specs/protocol.md §4): order kept, rpc.cancel seen, reading paused ------------


async def test_reading_pauses_once_the_queue_is_full_and_resumes() -> None:
    gated = Gated()
    limits = Limits(max_in_flight=1, max_queued_requests=8, shutdown_grace=2.0)
    n = 20_000  # ~1 MB of requests: far more than one read, the queue and the socket buffers hold
    payload = lines(*(request("hold", ["all"], i) for i in range(n)))
    sent = trio.Event()

    async def send(c: TrioLineClient) -> None:
        await c.send(payload)
        sent.set()

    async with connection_pair(gated.methods, limits=limits) as pair, trio.open_nursery() as nursery:
        c = pair.client
        nursery.start_soon(send, c)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set(), "the server stopped reading"
        queue = pair.schedule.queue
        per_read = 65536 // len(lines(request("hold", ["all"], 0))) + 1  # lines one read can hold
        assert 8 <= len(queue) < 8 + per_read  # the bound is checked between reads
        gated.gate("all").set()
        with trio.fail_after(TIMEOUT):
            answers = [json.loads(await c.readline())["id"] for _ in range(n)]
            await sent.wait()
        assert answers == list(range(n)), "one at a time: in order"


async def test_serial_mode_answers_errors_in_their_turn() -> None:
    gated = Gated()
    async with connection_pair(gated.methods, mode="serial") as pair:
        c = pair.client
        await c.send(
            lines(request("hold", ["a"], 1))
            + b"not json\n"
            + lines(request("nope", rid=2))
            + lines(request("ping", rid=3))
        )
        await trio.testing.wait_all_tasks_blocked()
        assert len(pair.schedule.queue) == 4  # the running head and three more
        gated.gate("a").set()
        answers = [await c.read_json() for _ in range(4)]
        assert [a["id"] for a in answers] == [1, None, 2, 3]
        assert [a.get("error", {}).get("code") for a in answers] == [None, -32700, -32601, None]


async def test_serial_mode_rpc_cancel_reaches_the_running_and_the_waiting() -> None:
    gated = Gated()
    async with connection_pair(gated.methods, mode="serial") as pair:
        c = pair.client
        await c.send(lines(request("hold", ["a"], 1), request("hold", ["b"], 2), request("ping", rid=3)))
        await trio.testing.wait_all_tasks_blocked()
        await c.send(lines(notification("rpc.cancel", {"id": 2}), notification("rpc.cancel", {"id": 1})))
        answers = [await c.read_json() for _ in range(3)]
        codes = [(a["id"], a.get("error", {}).get("code")) for a in answers]
        assert codes == [(2, -32005), (1, -32005), (3, None)]
        assert gated.order == ["start a", "ping"], "b never ran"


async def test_a_notification_behind_waiting_calls_runs_after_them() -> None:
    """Barriers keep their meaning when they wait in the queue: the calls before it (running or
    waiting for a slot) finish first, the calls after it start after it."""
    gated = Gated()
    limits = Limits(max_in_flight=1, shutdown_grace=2.0)
    async with connection_pair(gated.methods, limits=limits) as pair:
        c = pair.client
        await c.send(
            lines(
                request("hold", ["a"], 1),
                request("hold", ["b"], 2),
                notification("note", ["n"]),
                request("hold", ["c"], 3),
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        for name in "abc":
            gated.gate(name).set()
        assert sorted([(await c.read_json())["id"] for _ in range(3)]) == [1, 2, 3]
        assert gated.order == ["start a", "end a", "start b", "end b", "note n", "start c", "end c"]


@pytest.mark.parametrize("where", ["waiting", "batch"])
async def test_stop_answers_what_waits_and_never_starts_it(where: str) -> None:
    gated = Gated()
    limits = Limits(max_in_flight=1, shutdown_grace=2.0)
    async with connection_pair(gated.methods, limits=limits) as pair:
        c = pair.client
        waiting = [request("hold", ["b"], 2), request("hold", ["c"], 3)]
        await c.send(lines(request("hold", ["a"], 1), waiting if where == "batch" else waiting[0]))
        if where == "waiting":
            await c.send(lines(waiting[1]))
        await trio.testing.wait_all_tasks_blocked()
        pair.server.stop()
        first = await c.read_json()  # the waiting ones, answered at once
        got = first if isinstance(first, list) else [first, await c.read_json()]
        assert sorted((a["id"], a["error"]["code"]) for a in got) == [(2, -32002), (3, -32002)]
        gated.gate("a").set()
        assert await c.read_json() == {"jsonrpc": "2.0", "result": "a", "id": 1}  # it ran to its end
        assert await c.read_to_eof() == b""
    assert gated.order == ["start a", "end a"]


# -- what runs and what may be cancelled, without a connection ------------------------------------------


async def test_the_cancel_registry_finds_calls_by_id_and_spares_what_survives_a_disconnect() -> None:
    methods = Methods()
    methods.add("f")(lambda: None)
    methods.add("kept", run_to_completion=True)(lambda: None)
    dispatcher = Dispatcher(methods)

    def invocation(method: str, rid: Any, notification: bool = False) -> Invocation:
        prepared = dispatcher.prepare(Request(method, None, rid, notification))
        assert isinstance(prepared, Invocation)
        return prepared

    registry = CancelRegistry()
    assert not registry
    first, second = registry.add(invocation("f", 1)), registry.add(invocation("f", 1))
    note = registry.add(invocation("f", None, notification=True))
    kept = registry.add(invocation("kept", 2))
    assert registry.cancel(1)
    assert first.scope.cancel_called
    assert second.scope.cancel_called
    assert not registry.cancel(None), "a notification has no id to be cancelled by"
    assert not registry.cancel(3)
    registry.cancel_all(everything=False)  # a disconnect
    assert not note.scope.cancel_called
    assert not kept.scope.cancel_called
    registry.cancel_all(everything=True)  # the end of the grace
    assert note.scope.cancel_called
    assert kept.scope.cancel_called
    for running in (first, second, note, kept):
        registry.remove(running)
    assert not registry


def test_the_answer_policy_answers_a_call_and_never_a_notification() -> None:
    call = error_answer(5, False, ErrorCode.TIMEOUT, data="slow", reason="timeout")
    assert call.reason == "timeout"
    assert call.line is not None
    assert json.loads(call.line) == {
        "jsonrpc": "2.0",
        "error": {"code": -32004, "message": "Handler timed out", "data": "slow"},
        "id": 5,
    }
    quiet = error_answer(None, True, ErrorCode.TIMEOUT, data="slow", reason="timeout")
    assert quiet.line is None
    assert quiet.reason == "timeout"


# -- the same orderings end to end, over a listening socket ------------------------------------------


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
