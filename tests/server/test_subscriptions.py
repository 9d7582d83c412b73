"""Subscriptions end to end: a real server, real sockets, both Python clients and raw lines.

Counts are exact because the tests make them so, never by timing: ``burst(n)`` publishes its n
events inside one handler step, when no pump can run, so a queue of Q keeps the last Q and
drops n - Q; the back-pressure test holds the pump with an answer larger than the socket can
take, which it cannot finish writing until the test reads. Cleanup is checked in the server's
own figures and in trio's task tree (no pump task left).
"""

from __future__ import annotations

import select
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import TIMEOUT, LineClient, serving, wait_for

from jrpc_unix import (
    Client,
    ConnectionClosedError,
    Limits,
    Methods,
    RpcError,
    RpcTimeoutError,
    Server,
    current_context,
    open_client,
    serve_in_thread,
)
from jrpc_unix._server.thread import ServerThread

#: Set by ``blob`` as it runs: its answer is about to be queued.
BLOB_STARTED = threading.Event()
HOLD = "hold"


def make_methods(gate: trio.Event | None = None) -> Methods:
    methods = Methods()
    methods.add_topic("t", "test events: what burst() publishes")
    methods.add_topic("u", "more test events")

    @methods.add
    def burst(n: int, start: int = 0, topic: str = "t") -> int:
        """Publish n events in this one step: no pump runs until it returns."""
        server = current_context().server
        for i in range(start, start + n):
            server.publish(topic, i)
        return n

    @methods.add
    def blob(size: int) -> str:
        BLOB_STARTED.set()
        return "x" * size

    @methods.add
    def ping() -> str:
        return "pong"

    @methods.add
    async def hold() -> str:
        assert gate is not None
        await gate.wait()
        return "released"

    return methods


@pytest.fixture
def threaded(sock_path: str) -> Iterator[ServerThread]:
    with serve_in_thread(sock_path, make_methods()) as handle:
        yield handle


def figures(path: str) -> dict[str, Any]:
    with Client(path, timeout=TIMEOUT) as client:
        result: dict[str, Any] = client.call("rpc.stats")["server"]
        return result


# -- the blocking client -----------------------------------------------------------------------


def test_events_arrive_in_order_with_nothing_lost(threaded: ServerThread, sock_path: str) -> None:
    with Client(sock_path, timeout=TIMEOUT) as client, client.subscribe("t", queue_size=500) as sub:
        assert sub.id.startswith("s")
        assert sub.topic == "t"
        assert client.call("burst", 300) == 300
        assert [next(sub) for _ in range(300)] == list(range(300))
        assert sub.dropped == 0
        with pytest.raises(RpcTimeoutError, match=r"timed out after 0\.05 s waiting for an event of 't'$"):
            next(sub.events(timeout=0.05))
        with pytest.raises(RpcTimeoutError):  # nothing leaked to the general inbox
            client.wait_notification(timeout=0.01)


def test_two_subscriptions_each_get_their_own_events_between_calls(
    threaded: ServerThread, sock_path: str
) -> None:
    with Client(sock_path, timeout=TIMEOUT) as client:
        t = client.subscribe("t")
        u = client.subscribe("u")
        client.call("burst", n=3, topic="u")
        client.call("burst", n=2, start=10)
        client.call("burst", n=2, start=20, topic="u")
        assert client.call("ping") == "pong"  # events arriving during calls are kept for their reader
        assert [next(t), next(t)] == [10, 11]
        assert [next(u) for _ in range(5)] == [0, 1, 2, 20, 21]
        t.close()
        u.close()
        wait_for(lambda: figures(sock_path)["subscriptions"] == 0, "the server ended both")


def test_slow_reader_loses_the_oldest_with_one_exact_notice(threaded: ServerThread, sock_path: str) -> None:
    """Queue of 5, 23 events published in one step: the last 5 arrive, after a notice of 18."""
    with Client(sock_path, timeout=TIMEOUT) as client, client.subscribe("t", queue_size=5) as sub:
        assert client.call("burst", 23) == 23
        assert next(sub) == 18
        assert sub.dropped == 18
        assert [next(sub) for _ in range(4)] == [19, 20, 21, 22]
        assert client.call("rpc.stats")["server"]["events_dropped"] == 18
        assert client.call("burst", n=3, start=100) == 3  # the queue keeps working after a drop
        assert [next(sub) for _ in range(3)] == [100, 101, 102]
        assert sub.dropped == 18


def test_close_unsubscribes_and_later_events_are_not_delivered(
    threaded: ServerThread, sock_path: str
) -> None:
    with Client(sock_path, timeout=TIMEOUT) as client:
        sub = client.subscribe("t")
        client.call("burst", 2)
        assert next(sub) == 0
        sub.close()
        sub.close()  # idempotent
        assert sub.closed
        assert list(sub) == [], "unread events are discarded and iteration stops"
        wait_for(lambda: figures(sock_path)["subscriptions"] == 0, "the server ended it")
        with Client(sock_path, timeout=TIMEOUT) as other:
            other.call("burst", 2)
        with pytest.raises(RpcTimeoutError):
            client.wait_notification(timeout=0.05)


def test_client_timeout_bounds_iteration_and_the_subscription_survives(
    threaded: ServerThread, sock_path: str
) -> None:
    with Client(sock_path, timeout=0.05) as client, client.subscribe("t") as sub:
        with pytest.raises(RpcTimeoutError, match=r"timed out after 0\.05 s waiting for an event of 't'$"):
            next(sub)
        client.timeout = TIMEOUT
        client.call("burst", n=1, start=7)
        assert next(sub) == 7


def test_iteration_fails_when_the_server_goes_away(sock_path: str) -> None:
    handle = serve_in_thread(sock_path, make_methods())
    try:
        with Client(sock_path, timeout=TIMEOUT) as client:
            sub = client.subscribe("t")
            handle.stop()
            with pytest.raises(ConnectionClosedError, match=r"the server closed the connection before"):
                next(sub)
            assert sub.closed
            with pytest.raises(ConnectionClosedError, match=r"the subscription with it$"):
                next(sub)
            sub.close()  # nothing to do: the subscription ended with the connection
    finally:
        handle.stop()


def test_subscribing_to_an_unknown_topic_is_an_rpc_error(threaded: ServerThread, sock_path: str) -> None:
    with Client(sock_path, timeout=TIMEOUT) as client:
        with pytest.raises(RpcError, match=r"^\[-32602\] Invalid params$") as info:
            client.subscribe("nosuch")
        assert "no topic 'nosuch'" in info.value.data
        assert client.call("rpc.stats")["server"]["subscriptions"] == 0


def test_back_pressure_holds_events_in_the_queue_and_drops_exactly(sock_path: str) -> None:
    """A subscriber that does not read, behind an answer larger than the socket can hold.

    The server cannot finish writing the 4 MiB answer until the test reads, so its unsent
    output stays above half of ``max_pending_output`` and the pump may not take a single event
    from the queue: of 30 events published meanwhile, a queue of 4 keeps the last 4. Reading
    then gets the answer, exactly one notice of 26, and events 26..29.
    """
    limits = Limits(max_pending_output=64 << 10)
    BLOB_STARTED.clear()
    with serve_in_thread(sock_path, make_methods(), limits=limits) as handle, LineClient(sock_path) as raw:
        sub = raw.call("rpc.subscribe", {"topic": "t", "queue_size": 4})["result"]["subscription"]
        raw.send({"jsonrpc": "2.0", "method": "blob", "params": [4 << 20], "id": 2})
        assert BLOB_STARTED.wait(TIMEOUT)
        for i in range(30):  # each publish runs in the server's thread, after blob's answer is queued
            handle.server.publish("t", i)
        answer = raw.readline()
        assert len(answer) > 4 << 20
        assert raw.read_json() == {
            "jsonrpc": "2.0",
            "method": "rpc.dropped",
            "params": {"subscription": sub, "topic": "t", "count": 26},
        }
        events = [raw.read_json() for _ in range(4)]
        epoch = handle.server.epoch
        assert [e["params"] for e in events] == [
            {"subscription": sub, "topic": "t", "data": i, "epoch": epoch, "seq": i + 1}
            for i in range(26, 30)
        ]
        stats = raw.call("rpc.stats", rid=3)
        assert stats["id"] == 3, "nothing else came before the next answer"
        assert stats["result"]["server"]["events_dropped"] == 26


def test_the_raw_wire_of_a_drop(threaded: ServerThread, sock_path: str) -> None:
    epoch = threaded.server.epoch
    with LineClient(sock_path) as raw:
        sub = raw.call("rpc.subscribe", {"topic": "t", "queue_size": 2})["result"]["subscription"]
        assert raw.call("burst", [5], rid=2) == {"jsonrpc": "2.0", "result": 5, "id": 2}
        lines = [raw.read_json() for _ in range(3)]
        assert lines == [
            {
                "jsonrpc": "2.0",
                "method": "rpc.dropped",
                "params": {"subscription": sub, "topic": "t", "count": 3},
            },
            {
                "jsonrpc": "2.0",
                "method": "rpc.event",
                "params": {"subscription": sub, "topic": "t", "data": 3, "epoch": epoch, "seq": 4},
            },
            {
                "jsonrpc": "2.0",
                "method": "rpc.event",
                "params": {"subscription": sub, "topic": "t", "data": 4, "epoch": epoch, "seq": 5},
            },
        ]
        assert raw.call("ping", rid=3) == {"jsonrpc": "2.0", "result": "pong", "id": 3}


def test_unsubscribing_while_the_pump_writes_loses_nothing(sock_path: str) -> None:
    """The pump is stuck writing a 4 MiB event when rpc.unsubscribe arrives; both must arrive."""
    limits = Limits(shutdown_grace=0.1)  # the stop must not wait for the write that never ends
    with (
        serve_in_thread(sock_path, make_methods(), limits=limits) as handle,
        LineClient(sock_path, timeout=1) as raw,
    ):
        sub = raw.call("rpc.subscribe", {"topic": "t"})["result"]["subscription"]
        handle.server.publish("t", "y" * (4 << 20))
        readable, _, _ = select.select([raw.sock], [], [], TIMEOUT)  # the pump is writing it
        assert readable
        raw.send({"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"subscription": sub}, "id": 2})
        assert len(raw.readline()) > 4 << 20
        assert raw.read_json() == {"jsonrpc": "2.0", "result": True, "id": 2}


# -- the trio client ---------------------------------------------------------------------------


@pytest.fixture
def gate() -> trio.Event:
    return trio.Event()


@pytest.fixture
async def server(sock_path: str, gate: trio.Event) -> AsyncIterator[Server]:
    async with serving(sock_path, make_methods(gate)) as started:
        yield started


def push_tasks() -> list[str]:
    """The names of every subscription pump task in this trio run."""
    names: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        if task.name.endswith("._pump"):
            names.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())
    return names


async def test_trio_events_in_order_and_exact_drops(server: Server, sock_path: str) -> None:
    async with open_client(sock_path) as client:
        async with client.subscribe("t", queue_size=1000) as sub:
            await client.call("burst", 500)
            got = []
            with trio.fail_after(TIMEOUT):
                async for data in sub:
                    got.append(data)
                    if len(got) == 500:
                        break
            assert got == list(range(500))
            assert sub.dropped == 0
        async with client.subscribe("t", queue_size=3) as small:
            await client.call("burst", 10)
            with trio.fail_after(TIMEOUT):
                assert [await small.__anext__() for _ in range(3)] == [7, 8, 9]
            assert small.dropped == 7


async def test_trio_unsubscribe_leaves_no_task_behind(server: Server, sock_path: str) -> None:
    async with open_client(sock_path) as client:
        async with client.subscribe("stats", interval=0.05) as stats, client.subscribe("t") as t:
            with trio.fail_after(TIMEOUT):
                assert "server" in await stats.__anext__()
            await trio.testing.wait_all_tasks_blocked()
            assert [n.rsplit(".", 1)[1] for n in push_tasks()] == ["_pump", "_pump"]  # one each
            assert server.stats.subscriptions == 2
        assert stats.closed
        assert t.closed
        with trio.fail_after(TIMEOUT):
            await client.call("ping")  # sent after the unsubscribes: they have run
        await trio.testing.wait_all_tasks_blocked()
        assert push_tasks() == []
        assert server.stats.subscriptions == 0


async def test_trio_disconnect_ends_subscriptions(server: Server, sock_path: str) -> None:
    """Subscribed with plain calls, never unsubscribed: closing the connection ends them."""
    async with open_client(sock_path) as client:
        await client.call("rpc.subscribe", topic="stats", interval=0.05)
        await client.call("rpc.subscribe", topic="t")
        with trio.fail_after(TIMEOUT):
            await client.wait_notification()  # the producer runs
        await trio.testing.wait_all_tasks_blocked()
        assert len(push_tasks()) == 2
        assert server.stats.subscriptions == 2
    with trio.fail_after(TIMEOUT):
        while server.stats.connections_open:  # the server notices the close on its own
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()
    await trio.testing.wait_all_tasks_blocked()
    assert push_tasks() == []
    assert server.stats.subscriptions == 0
    assert "rpc.unsubscribe" not in server.stats.methods


async def test_trio_cancelled_reader_unsubscribes_without_waiting(server: Server, sock_path: str) -> None:
    async with open_client(sock_path) as client:
        with trio.CancelScope() as scope:
            async with client.subscribe("t") as sub:
                await client.call("burst", 1)
                async for _ in sub:
                    scope.cancel()  # the next wait for an event is cancelled, inside the block
        assert scope.cancelled_caught
        assert sub.closed
        with trio.fail_after(TIMEOUT):
            assert (await client.call("rpc.stats"))["server"]["subscriptions"] == 0
        assert server.stats.method("rpc.unsubscribe", True).notifications == 1


async def test_trio_subscription_given_up_before_its_answer_is_ended(
    server: Server, sock_path: str, gate: trio.Event
) -> None:
    """rpc.subscribe written (it waits behind a barrier), its caller cancelled: the client's
    rpc.cancel reaches the waiting request, which never runs; its late -32005 is dropped."""
    async with open_client(sock_path) as client:
        await client.notify(HOLD)  # a barrier the server is stuck in until the gate opens
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:

                async def subscribe() -> None:
                    async with client.subscribe("t"):
                        raise AssertionError("cancelled before the answer")

                nursery.start_soon(subscribe)
                await trio.testing.wait_all_tasks_blocked()  # the request is written
                scope.cancel()
        await trio.testing.wait_all_tasks_blocked()  # so is rpc.cancel, read while the barrier runs
        gate.set()
        with trio.fail_after(TIMEOUT):
            await client.call("ping")  # answered after the late -32005
            assert (await client.call("rpc.stats"))["server"]["subscriptions"] == 0
        assert server.stats.method("rpc.subscribe", True).calls == 0
        assert server.stats.rejected_requests["cancelled"] == 1
        assert client.dropped == 1


async def test_trio_iteration_fails_when_the_server_closes(sock_path: str) -> None:
    async with (
        serving(sock_path, make_methods()) as server,
        open_client(sock_path) as client,
        client.subscribe("t") as sub,
    ):
        server.stop()
        with trio.fail_after(TIMEOUT), pytest.raises(ConnectionClosedError):
            async for _ in sub:
                pass
        assert sub.closed


async def test_trio_subscription_outside_its_block(server: Server, sock_path: str) -> None:
    async with open_client(sock_path) as client:
        sub = client.subscribe("t")
        with pytest.raises(RuntimeError, match=r"inside `async with client\.subscribe"):
            _ = sub.id
        async with sub:
            with pytest.raises(RuntimeError, match="entered once"):
                await sub.__aenter__()
        with trio.fail_after(TIMEOUT), pytest.raises(StopAsyncIteration):
            await sub.__anext__()


async def test_raw_rpc_subscribe_keeps_using_wait_notification(server: Server, sock_path: str) -> None:
    """Subscribing with a plain call (not subscribe()) still delivers through wait_notification."""
    async with open_client(sock_path) as client:
        sub = (await client.call("rpc.subscribe", topic="t"))["subscription"]
        await client.call("burst", n=1, start=5)
        with trio.fail_after(TIMEOUT):
            note = await client.wait_notification()
        assert note.params == {"subscription": sub, "topic": "t", "data": 5, "epoch": server.epoch, "seq": 1}


def test_sync_events_from_a_produced_topic(sock_path: str) -> None:
    with serve_in_thread(sock_path, make_methods()), Client(sock_path, timeout=TIMEOUT) as client:
        with client.subscribe("stats", interval=0.05) as sub:
            first, second = next(sub), next(sub)
        assert first["server"]["subscriptions"] == second["server"]["subscriptions"] == 1
        wait_for(lambda: figures(sock_path)["subscriptions"] == 0, "the server ended it")
