"""jrpc_unix.open_client, the trio client: what only it does (many tasks on one connection,
cancellation reaching the server, the connection's end, retrying a full accept queue). What both
clients promise alike is test_contract.py's.

The server runs in the test's own trio run (``helpers.serving``). Handlers wait on events the
test controls, so "this answer comes first" and "this call is still running" are facts, not
timing guesses; a timeout only ever runs out on a call whose gate is closed.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from helpers import TIMEOUT, serving
from helpers.client import FullBacklog, ScriptedPeer

from jrpc_unix import (
    ConnectError,
    ConnectionClosedError,
    Methods,
    Response,
    RpcError,
    Server,
    open_client,
)


@dataclass
class Gates:
    """Per-name events: ``entered`` when a ``gate(name)`` call runs, ``opened`` to let it finish."""

    entered: dict[str, trio.Event] = field(default_factory=dict)
    opened: dict[str, trio.Event] = field(default_factory=dict)
    finished: dict[str, trio.Event] = field(default_factory=dict)

    def __getitem__(self, name: str) -> tuple[trio.Event, trio.Event, trio.Event]:
        for d in (self.entered, self.opened, self.finished):
            d.setdefault(name, trio.Event())
        return self.entered[name], self.opened[name], self.finished[name]


def make_methods(gates: Gates) -> Methods:
    methods = Methods()
    config: dict[str, Any] = {}

    @methods.add
    def echo(value: Any) -> Any:
        return value

    @methods.add
    async def gate(name: str) -> str:
        entered, opened, finished = gates[name]
        entered.set()
        try:
            await opened.wait()
        finally:
            finished.set()
        return name

    @methods.add
    async def after(name: str) -> str:
        """Answers once gate(name) has finished: its answer was queued first."""
        await gates[name][2].wait()
        return f"after {name}"

    @methods.add("config.set")
    def config_set(key: str, value: Any) -> None:
        config[key] = value

    @methods.add("config.get")
    def config_get(key: str) -> Response:
        return Response.ok(config[key]) if key in config else Response.fail("no such key", code=7)

    return methods


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def server(sock_path: str, gates: Gates) -> AsyncIterator[Server]:
    async with serving(sock_path, make_methods(gates)) as started:
        yield started


# -- calls, notifications, batches -------------------------------------------------------------


async def test_errors_raise_rpcerror_unwrapped(server: Server, sock_path: str) -> None:
    with pytest.raises(RpcError, match=r"^\[7\] no such key$") as info:
        async with open_client(sock_path) as client:
            await client.call("config.get", "missing")
    assert info.value.code == 7
    with pytest.raises(ValueError, match=r"^mine$"):
        async with open_client(sock_path):
            raise ValueError("mine")


# -- concurrency -------------------------------------------------------------------------------


async def test_many_tasks_share_one_connection(server: Server, sock_path: str) -> None:
    results: dict[int, Any] = {}
    async with open_client(sock_path) as client:

        async def one(i: int) -> None:
            results[i] = await client.call("echo", {"task": i})

        async with trio.open_nursery() as nursery:
            for i in range(300):
                nursery.start_soon(one, i)
    assert results == {i: {"task": i} for i in range(300)}
    assert server.stats.connections_total == 1


async def test_answers_out_of_order_reach_the_right_callers(
    server: Server, sock_path: str, gates: Gates
) -> None:
    order: list[str] = []
    entered, opened, _ = gates["slow"]
    fast_done = trio.Event()
    async with open_client(sock_path) as client:

        async def call(method: str, arg: Any) -> None:
            order.append(str(await client.call(method, arg)))
            if arg == "fast":
                fast_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(call, "gate", "slow")
            await entered.wait()
            nursery.start_soon(call, "echo", "fast")
            await fast_done.wait()  # the fast answer arrives while the gate is still closed
            opened.set()
    assert order == ["fast", "slow"]


async def test_cancelled_call_leaves_the_connection_usable_and_drops_the_late_answer(
    server: Server, sock_path: str, gates: Gates
) -> None:
    entered, opened, _ = gates["c"]
    async with open_client(sock_path) as client:
        with pytest.raises(trio.TooSlowError):
            with trio.fail_after(0.05):
                await client.call("gate", "c")  # the gate stays closed: this cannot answer in time
        await entered.wait()  # the request went out whole even though its caller gave up
        assert await client.call("echo", "still usable") == "still usable"
        opened.set()
        # rpc.cancel stopped gate; `after` answers once gate has finished, so after its late
        # -32005 answer, which reached nobody
        assert await client.call("after", "c") == "after c"
        assert client.dropped == 1
        assert not client.closed


async def test_cancelling_many_waiting_calls(server: Server, sock_path: str, gates: Gates) -> None:
    async with open_client(sock_path) as client:
        with trio.move_on_after(0.05) as scope:
            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(client.call, "gate", f"g{i}")
        assert scope.cancelled_caught
        for i in range(20):
            gates[f"g{i}"][1].set()
        assert await client.call("after", "g19") == "after g19"
        assert await client.call("echo", 1) == 1


async def test_outer_cancellation_exits_cleanly(server: Server, sock_path: str) -> None:
    with trio.CancelScope() as scope:
        async with open_client(sock_path) as client:
            scope.cancel()
            await client.call("echo", 1)
    assert scope.cancelled_caught


# -- transport errors --------------------------------------------------------------------------


async def read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(TIMEOUT):
        while not data.endswith(b"\n"):
            data += await stream.receive_some(1)
    return data


async def test_a_full_accept_queue_is_retried_until_there_is_room(
    sock_path: str, autojump_clock: trio.abc.Clock
) -> None:
    """EAGAIN on connect means "try again", not "connected" (issue 9, 13)."""
    with FullBacklog(sock_path) as backlog:
        listener = trio.socket.from_stdlib_socket(backlog.listener)

        async def free_then_answer() -> None:
            await trio.sleep(1)  # the client found the queue full at once and is trying again
            backlog.free_one()
            conn, _ = await listener.accept()
            async with trio.SocketStream(conn) as stream:
                request = json.loads(await read_request(stream))
                await stream.send_all(b'{"jsonrpc":"2.0","result":"pong","id":%d}\n' % request["id"])

        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(free_then_answer)
            async with open_client(sock_path) as client:
                assert trio.current_time() - start >= 1
                assert await client.call("ping") == "pong"


async def test_a_full_accept_queue_is_retried_up_to_connect_timeout(
    sock_path: str, autojump_clock: trio.abc.Clock
) -> None:
    with FullBacklog(sock_path):
        start = trio.current_time()
        message = r": the server is not accepting connections: its accept queue stayed full for 5\.0 s "
        with pytest.raises(ConnectError, match=message + r"\(it is overloaded or stuck\)$"):
            async with open_client(sock_path, connect_timeout=5):
                pass
        assert trio.current_time() - start == 5
        with trio.move_on_after(1000) as scope:  # None: until the caller's cancel scope ends it
            async with open_client(sock_path, connect_timeout=None):
                pass
        assert scope.cancelled_caught


async def test_after_the_server_closed_the_connection_everything_is_refused(sock_path: str) -> None:
    with ScriptedPeer(sock_path, lambda peer, conn: peer.readline(conn)):
        async with open_client(sock_path) as client:
            with pytest.raises(ConnectionClosedError, match=r"before answering 'ping'$"):
                await client.call("ping")
            assert client.closed
            closed = r"^/.*\.sock: the server closed the connection$"
            with pytest.raises(ConnectionClosedError, match=closed):
                await client.call("ping")
            with pytest.raises(ConnectionClosedError, match=closed):
                await client.notify("ping")
            with pytest.raises(ConnectionClosedError, match=closed):
                async with client.subscribe("config"):
                    pass


async def test_refusal_is_named_when_the_server_closes(sock_path: str) -> None:
    def refuse(peer: ScriptedPeer, conn: socket.socket) -> None:
        peer.readline(conn)
        peer.readline(conn)
        conn.sendall(b'{"jsonrpc":"2.0","error":{"code":-32006,"message":"Server overloaded"},"id":null}\n')

    with ScriptedPeer(sock_path, refuse):
        async with open_client(sock_path) as client:
            errors: dict[str, str] = {}

            async def call(name: str) -> None:
                with pytest.raises(ConnectionClosedError) as info:
                    await client.call(name)
                errors[name] = str(info.value)

            async with trio.open_nursery() as callers:  # two calls wait: the null id names neither
                callers.start_soon(call, "a")
                callers.start_soon(call, "b")
    assert errors == {
        name: f"{sock_path}: the server closed the connection before answering {name!r} "
        "(the server said: [-32006] Server overloaded)"
        for name in "ab"
    }


async def test_waiting_for_notifications_ends_when_the_connection_does(sock_path: str) -> None:
    def close_soon(peer: ScriptedPeer, conn: socket.socket) -> None:
        peer.readline(conn)
        conn.sendall(b'{"jsonrpc":"2.0","method":"rpc.event","params":{"data":1}}\n')

    with ScriptedPeer(sock_path, close_soon):
        async with open_client(sock_path) as client:
            await client.notify("hello")
            assert (await client.wait_notification()).params == {"data": 1}
            with pytest.raises(ConnectionClosedError, match=r"^/.*\.sock: the server closed the connection$"):
                await client.wait_notification()
