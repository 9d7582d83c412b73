"""Progress reports and cancellation over real sockets: raw lines, the trio client, the blocking one.

The server runs in the test's trio run; its handlers record what happened to them (entered,
cancelled, finished) in trio Events the test waits on, so "the server saw the cancel" is a fact
the handler reports, not a guess from elapsed time. The blocking client runs in a worker thread
(``trio.to_thread``) against the same server.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import TIMEOUT, TrioLineClient, serving

from jrpc_unix import (
    Call,
    Client,
    Limits,
    Methods,
    RpcError,
    RpcTimeoutError,
    Server,
    current_context,
    open_client,
)


class Record:
    """``record["entered", name]``, ``["cancelled", name]``, ``["finished", name]``,
    ``["open", name]`` (the test sets it to let the handler finish): trio Events."""

    def __init__(self) -> None:
        self.events: dict[tuple[str, str], trio.Event] = {}

    def __getitem__(self, key: tuple[str, str]) -> trio.Event:
        return self.events.setdefault(key, trio.Event())

    def happened(self, what: str, name: str) -> bool:
        return self[what, name].is_set()


def make_methods(record: Record) -> Methods:
    methods = Methods()

    async def held(name: str) -> str:
        record["entered", name].set()
        try:
            await record["open", name].wait()
        except trio.Cancelled:
            record["cancelled", name].set()
            raise
        record["finished", name].set()
        return name

    methods.add("hold")(held)
    methods.add("hold_rtc", run_to_completion=True)(held)

    @methods.add
    async def steps(n: int) -> int:
        """n progress reports with a checkpoint between each, then the answer."""
        ctx = current_context()
        try:
            for i in range(1, n + 1):
                ctx.progress(i, n, f"step {i}")
                await trio.lowlevel.checkpoint()
        except trio.Cancelled:
            record["cancelled", "steps"].set()
            raise
        return n

    @methods.add
    async def report_then_hold() -> None:
        """One progress report, then wait until cancelled: only a cancel can end it."""
        current_context().progress(1, 2, "half way")
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            record["cancelled", "report_then_hold"].set()
            raise

    @methods.add
    def quick(n: int) -> int:
        """Reports and answers in one step (an inline handler)."""
        ctx = current_context()
        for i in range(1, n + 1):
            ctx.progress(i, n)
        return n

    @methods.add(blocking=True)
    def threaded(n: int) -> int:
        """Reports from a worker thread."""
        ctx = current_context()
        for i in range(1, n + 1):
            ctx.progress(i, None, f"{i} done")
        return n

    @methods.add
    def ping() -> str:
        return "pong"

    return methods


@pytest.fixture
def record() -> Record:
    return Record()


@pytest.fixture
async def server(sock_path: str, record: Record) -> AsyncIterator[Server]:
    async with serving(sock_path, make_methods(record)) as started:
        yield started


def calls(server: Server, method: str) -> int:
    entry = server.stats.methods.get(method)
    return 0 if entry is None else entry.calls


def notifications(server: Server, method: str) -> int:
    entry = server.stats.methods.get(method)
    return 0 if entry is None else entry.notifications


async def raw_client(path: str) -> TrioLineClient:
    return await TrioLineClient.connect(path)


# -- progress ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["steps", "quick", "threaded"])
async def test_every_report_precedes_the_answer_on_the_wire(
    server: Server, sock_path: str, method: str
) -> None:
    raw = await raw_client(sock_path)
    sub = (await raw.call("rpc.subscribe", {"topic": "progress"}, rid=1))["result"]["subscription"]
    await raw.send({"jsonrpc": "2.0", "method": method, "params": [5], "id": 2})
    lines = [await raw.read_json()]
    while "id" not in lines[-1]:
        lines.append(await raw.read_json())
    assert lines[-1] == {"jsonrpc": "2.0", "result": 5, "id": 2}
    reports = [line["params"] for line in lines[:-1]]
    assert [r["subscription"] for r in reports] == [sub] * 5
    assert [(r["data"]["id"], r["data"]["done"]) for r in reports] == [(2, i) for i in range(1, 6)]
    await raw.aclose()


async def test_no_subscription_no_reports(server: Server, sock_path: str) -> None:
    raw = await raw_client(sock_path)
    assert await raw.call("steps", [3], rid=4) == {"jsonrpc": "2.0", "result": 3, "id": 4}
    assert await raw.call("ping", rid=5) == {"jsonrpc": "2.0", "result": "pong", "id": 5}
    await raw.aclose()


async def test_trio_progress_callbacks_get_their_own_reports_in_order(server: Server, sock_path: str) -> None:
    seen: dict[int, list[tuple[Any, Any, Any]]] = {3: [], 5: []}
    async with open_client(sock_path) as client:

        async def one(n: int) -> None:
            result = await client.call("steps", n, progress=lambda *report: seen[n].append(report))
            assert result == n
            assert len(seen[n]) == n, "every report was handed on before call returned"

        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, 3)
                nursery.start_soon(one, 5)
            assert await client.call("threaded", 2, progress=lambda *r: seen[3].append(r)) == 2
    assert seen[5] == [(i, 5, f"step {i}") for i in range(1, 6)]
    assert seen[3] == [
        (1, 3, "step 1"),
        (2, 3, "step 2"),
        (3, 3, "step 3"),
        (1, None, "1 done"),
        (2, None, "2 done"),
    ]
    assert calls(server, "rpc.subscribe") == 1, "one progress subscription per connection, however many ask"


async def test_trio_progress_callback_failing_cancels_the_call(
    server: Server, sock_path: str, record: Record
) -> None:
    def fail(done: Any, total: Any, message: Any) -> None:
        raise ValueError(f"callback saw {done}")

    async with open_client(sock_path) as client:
        with trio.fail_after(TIMEOUT):
            with pytest.raises(ValueError, match=r"^callback saw 1$"):
                await client.call("report_then_hold", progress=fail)
            await record["cancelled", "report_then_hold"].wait()
            assert await client.call("ping") == "pong"


async def test_blocking_client_progress(server: Server, sock_path: str, record: Record) -> None:
    def scenario() -> tuple[list[Any], list[Any]]:
        first: list[Any] = []
        second: list[Any] = []
        with Client(sock_path, timeout=TIMEOUT) as client:
            assert client.call("steps", 3, progress=lambda *r: first.append(r)) == 3
            assert client.call("quick", 2, progress=lambda *r: second.append(r)) == 2
            assert client.call("steps", 2) == 2  # its reports are not asked for: none leak out
            with pytest.raises(RpcTimeoutError):
                client.wait_notification(timeout=0.05)
            client.timeout = 0.05
            with pytest.raises(RpcTimeoutError):  # closes the connection, and its subscription
                client.call("hold", "slow")
            client.timeout = TIMEOUT
            assert client.call("quick", 1, progress=lambda *r: second.append(r)) == 1
        return first, second

    with trio.fail_after(TIMEOUT):
        first, second = await trio.to_thread.run_sync(scenario)
    assert first == [(1, 3, "step 1"), (2, 3, "step 2"), (3, 3, "step 3")]
    assert second == [(1, 2, None), (2, 2, None), (1, 1, None)]
    assert calls(server, "rpc.subscribe") == 2, "once per connection: again after the reconnect"


async def test_blocking_client_progress_callback_failing(
    server: Server, sock_path: str, record: Record
) -> None:
    def scenario() -> None:
        with Client(sock_path, timeout=TIMEOUT) as client:
            with pytest.raises(ZeroDivisionError):
                client.call("report_then_hold", progress=lambda *r: 1 / 0)
            assert client.call("ping") == "pong"  # on a new connection

    with trio.fail_after(TIMEOUT):
        await trio.to_thread.run_sync(scenario)
        await record["cancelled", "report_then_hold"].wait()  # the dropped connection cancelled it
    assert server.stats.connections_total == 2


# -- cancellation by rpc.cancel ----------------------------------------------------------------


async def test_rpc_cancel_as_a_notification(server: Server, sock_path: str, record: Record) -> None:
    raw = await raw_client(sock_path)
    await raw.send({"jsonrpc": "2.0", "method": "hold", "params": ["a"], "id": 7})
    with trio.fail_after(TIMEOUT):
        await record["entered", "a"].wait()
    await raw.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": 7}})
    assert await raw.read_json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32005, "message": "Cancelled", "data": "hold was cancelled"},
        "id": 7,
    }
    assert record.happened("cancelled", "a")
    assert not record.happened("finished", "a")
    await raw.aclose()


async def test_rpc_cancel_as_a_call(server: Server, sock_path: str, record: Record) -> None:
    raw = await raw_client(sock_path)
    await raw.send({"jsonrpc": "2.0", "method": "hold", "params": ["b"], "id": "x"})
    with trio.fail_after(TIMEOUT):
        await record["entered", "b"].wait()
    await raw.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": "x"}, "id": 9})
    answers = {a["id"]: a for a in [await raw.read_json(), await raw.read_json()]}
    assert answers[9] == {"jsonrpc": "2.0", "result": True, "id": 9}
    assert answers["x"]["error"]["code"] == -32005
    assert await raw.call("rpc.cancel", {"id": 12345}, rid=10) == {
        "jsonrpc": "2.0",
        "result": False,
        "id": 10,
    }
    await raw.aclose()


# -- cancellation by disconnect ----------------------------------------------------------------


async def test_disconnect_cancels_calls_but_not_run_to_completion_ones(
    server: Server, sock_path: str, record: Record
) -> None:
    raw = await raw_client(sock_path)
    await raw.send({"jsonrpc": "2.0", "method": "hold", "params": ["c"], "id": 1})
    await raw.send({"jsonrpc": "2.0", "method": "hold_rtc", "params": ["d"], "id": 2})
    with trio.fail_after(TIMEOUT):
        await record["entered", "c"].wait()
        await record["entered", "d"].wait()
        await raw.aclose()
        await record["cancelled", "c"].wait()  # the server noticed the disconnect...
        await trio.testing.wait_all_tasks_blocked()
        assert not record.happened("cancelled", "d")  # ...and left the run-to-completion call alone
        record["open", "d"].set()
        await record["finished", "d"].wait()
    assert server.stats.in_flight == 0


async def test_blocking_client_timeout_drops_the_connection_and_the_call(
    server: Server, sock_path: str, record: Record
) -> None:
    def call(method: str, name: str) -> None:
        with Client(sock_path, timeout=0.05) as client, pytest.raises(RpcTimeoutError):
            client.call(method, name)

    with trio.fail_after(TIMEOUT):
        await trio.to_thread.run_sync(call, "hold", "e")
        await record["cancelled", "e"].wait()
        await trio.to_thread.run_sync(call, "hold_rtc", "f")
        await trio.testing.wait_all_tasks_blocked()
        assert not record.happened("cancelled", "f")
        record["open", "f"].set()
        await record["finished", "f"].wait()


# -- the trio client cancels what its callers give up ------------------------------------------


async def test_a_cancelled_caller_sends_rpc_cancel_without_waiting(
    server: Server, sock_path: str, record: Record
) -> None:
    async with open_client(sock_path) as client:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(client.call, "hold", "g"))
                await record["entered", "g"].wait()
                nursery.cancel_scope.cancel()  # the caller unwinds at once: nothing to wait for
            await record["cancelled", "g"].wait()  # the server got rpc.cancel and stopped it
            assert await client.call("ping") == "pong"
        assert client.dropped == 1, "its late -32005 answer reached nobody"
        assert notifications(server, "rpc.cancel") == 1


async def test_a_request_cancelled_before_it_is_written_is_never_sent(server: Server, sock_path: str) -> None:
    async with open_client(sock_path) as client:
        with trio.CancelScope() as scope:
            scope.cancel()
            await client.call("hold", "never")
        assert scope.cancelled_caught
        with trio.fail_after(TIMEOUT):
            assert await client.call("ping") == "pong"
        assert calls(server, "hold") == 0
        assert notifications(server, "rpc.cancel") == 0
        assert client.dropped == 0


async def test_a_cancelled_batch_cancels_each_call(server: Server, sock_path: str, record: Record) -> None:
    async with open_client(sock_path) as client:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.batch, Call("hold", "h"), Call("hold", "i"), Call("ping"))
                await record["entered", "h"].wait()
                await record["entered", "i"].wait()
                nursery.cancel_scope.cancel()
            await record["cancelled", "h"].wait()
            await record["cancelled", "i"].wait()
            assert await client.call("ping") == "pong"
        # a batch is answered as one array: all three calls were unanswered, ping included
        assert notifications(server, "rpc.cancel") == 3


async def test_a_timed_out_call_leaves_the_client_usable(
    server: Server, sock_path: str, record: Record
) -> None:
    async with open_client(sock_path) as client:
        with trio.move_on_after(0.05):
            await client.call("hold", "j")
        with trio.fail_after(TIMEOUT):
            await record["cancelled", "j"].wait()
            assert await client.call("ping") == "pong"
        with pytest.raises(RpcError, match=r"^\[-32601\] Method not found$"):
            await client.call("nope")


async def test_rpc_cancel_stops_a_run_to_completion_method_too(
    server: Server, sock_path: str, record: Record
) -> None:
    """run_to_completion survives a disconnect; an explicit rpc.cancel still stops it."""
    async with open_client(sock_path) as client:
        with trio.fail_after(TIMEOUT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(functools.partial(client.call, "hold_rtc", "k"))
                await record["entered", "k"].wait()
                nursery.cancel_scope.cancel()
            await record["cancelled", "k"].wait()


async def test_an_own_progress_subscription_shares_the_reports(server: Server, sock_path: str) -> None:
    seen: list[Any] = []
    async with open_client(sock_path) as client, client.subscribe("progress") as sub:
        with trio.fail_after(TIMEOUT):
            assert await client.call("steps", 2, progress=lambda *r: seen.append(r)) == 2
            events = [await sub.__anext__(), await sub.__anext__()]
    assert seen == [(1, 2, "step 1"), (2, 2, "step 2")]
    assert [(e["id"], e["done"]) for e in events] == [(2, 1), (2, 2)]
    assert calls(server, "rpc.subscribe") == 1, "the client used the reader's subscription"


# -- cancellation whatever the in-flight state (the reader never waits for a slot) --------------


@pytest.fixture
async def narrow_server(sock_path: str, record: Record) -> AsyncIterator[Server]:
    """Two calls at most in flight per connection."""
    async with serving(sock_path, make_methods(record), limits=Limits(max_in_flight=2)) as started:
        yield started


def _hold(name: str, rid: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": "hold", "params": [name], "id": rid}


async def test_rpc_cancel_is_read_while_every_slot_is_taken(
    narrow_server: Server, sock_path: str, record: Record
) -> None:
    raw = await raw_client(sock_path)
    for rid, name in enumerate(["a", "b", "c"], 1):  # c waits for a slot
        await raw.send(_hold(name, rid))
    with trio.fail_after(TIMEOUT):
        await record["entered", "a"].wait()
        await record["entered", "b"].wait()
    await raw.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": 1}})
    assert await raw.read_json() == {
        "jsonrpc": "2.0",
        "error": {"code": -32005, "message": "Cancelled", "data": "hold was cancelled"},
        "id": 1,
    }
    with trio.fail_after(TIMEOUT):
        await record["entered", "c"].wait()  # the freed slot went to the waiting call
    record["open", "b"].set()
    record["open", "c"].set()
    assert {(await raw.read_json())["id"] for _ in range(2)} == {2, 3}
    await raw.aclose()


async def test_rpc_cancel_of_a_waiting_call_answers_it_without_running_it(
    narrow_server: Server, sock_path: str, record: Record
) -> None:
    raw = await raw_client(sock_path)
    for rid, name in enumerate(["a", "b", "c", "d"], 1):  # c and d wait for a slot
        await raw.send(_hold(name, rid))
    await raw.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": 3}, "id": 9})
    answers = {a["id"]: a for a in [await raw.read_json(), await raw.read_json()]}
    assert answers[9] == {"jsonrpc": "2.0", "result": True, "id": 9}
    assert answers[3] == {
        "jsonrpc": "2.0",
        "error": {"code": -32005, "message": "Cancelled", "data": "hold was cancelled"},
        "id": 3,
    }
    record["open", "a"].set()
    assert (await raw.read_json())["id"] == 1
    with trio.fail_after(TIMEOUT):
        await record["entered", "d"].wait()  # d, not c, took the slot
    record["open", "b"].set()
    record["open", "d"].set()
    assert {(await raw.read_json())["id"] for _ in range(2)} == {2, 4}
    assert not record.happened("entered", "c")
    assert narrow_server.stats.rejected_requests["cancelled"] == 1
    await raw.aclose()


async def test_a_ping_behind_a_running_notification_waits_but_a_cancel_does_not(
    server: Server, sock_path: str, record: Record
) -> None:
    """A notification is a barrier for what follows it, not for rpc.cancel."""
    raw = await raw_client(sock_path)
    await raw.send(_hold("a", 1))
    await raw.send({"jsonrpc": "2.0", "method": "hold", "params": ["note"]})  # waits for a
    await raw.send({"jsonrpc": "2.0", "method": "ping", "id": "p"})  # waits for the notification
    with trio.fail_after(TIMEOUT):
        await record["entered", "a"].wait()
    await raw.send({"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": 1}})
    assert (await raw.read_json())["error"]["code"] == -32005
    with trio.fail_after(TIMEOUT):
        await record["entered", "note"].wait()
    await trio.testing.wait_all_tasks_blocked()
    assert not record.happened("finished", "note")
    record["open", "note"].set()
    assert await raw.read_json() == {"jsonrpc": "2.0", "result": "pong", "id": "p"}
    await raw.aclose()
