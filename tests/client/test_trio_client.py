"""jrpc_unix.open_client, the trio client: many tasks on one connection, cancellation, errors.

The server runs in the test's own trio run (``nursery.start(serve, ...)`` returns once it
listens). Handlers wait on events the test controls, so "this answer comes first" and "this call
is still running" are facts, not timing guesses.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
from helpers import TIMEOUT, DemoProcess
from helpers.client import FullBacklog, ReportWatch

from jrpc_unix import (
    AsyncClient,
    Call,
    ConnectError,
    ConnectionClosedError,
    Limits,
    Methods,
    Notify,
    ProtocolError,
    Response,
    RpcError,
    Server,
    open_client,
    serve,
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
    async with trio.open_nursery() as nursery:
        started: Server = await nursery.start(functools.partial(serve, sock_path, make_methods(gates)))
        yield started
        nursery.cancel_scope.cancel()


# -- calls, notifications, batches -------------------------------------------------------------


async def test_call_notify_batch_send(server: Server, sock_path: str) -> None:
    async with open_client(sock_path) as client:
        assert isinstance(client, AsyncClient)
        assert await client.call("echo", [1, "☃", 2**70]) == [1, "☃", 2**70]
        assert await client.call("echo", value={"k": None}) == {"k": None}
        assert await client.notify("config.set", "level", "debug") is None
        assert await client.call("config.get", key="level") == "debug"
        results = await client.batch(
            Call("echo", 1), Notify("config.set", "n", 2), Call("nope"), Call("config.get", "n")
        )
        assert results[0] == 1
        assert isinstance(results[1], RpcError)
        assert str(results[1]) == "[-32601] Method not found"
        assert results[2] == 2
        assert await client.batch(Notify("config.set", "n", 3)) == []
        assert await client.send("config.get", {"key": "n"}) == Response.ok(3)
        assert await client.send("config.get", ["missing"]) == Response.fail("no such key", code=7)
        assert await client.send("config.set", {"key": "n", "value": 4}, respond=False) is None
        assert await client.call("config.get", "n") == 4


async def test_errors_raise_rpcerror_unwrapped(server: Server, sock_path: str) -> None:
    with pytest.raises(RpcError, match=r"^\[7\] no such key$") as info:
        async with open_client(sock_path) as client:
            await client.call("config.get", "missing")
    assert info.value.code == 7
    with pytest.raises(ValueError, match=r"^mine$"):
        async with open_client(sock_path):
            raise ValueError("mine")


async def test_against_the_demo_service(shared_demo: DemoProcess) -> None:
    async with open_client(shared_demo.path) as client:
        assert await client.call("ping") == "pong"
        assert await client.call("subtract", minuend=42, subtrahend=23) == 19


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


async def test_missing_socket_file(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "none.sock")
    with pytest.raises(
        ConnectError,
        match=r"^cannot connect to .*/none\.sock: no such socket file \(is the server running\?\)$",
    ):
        async with open_client(path):
            pass


async def scripted_peer(
    path: str, script: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """A server on a real socket that runs ``script(stream)`` on one connection."""
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(1)
    listener = trio.SocketListener(sock)
    task_status.started()
    async with listener:
        stream = await listener.accept()
        async with stream:
            await script(stream)


async def read_request(stream: trio.SocketStream) -> bytes:
    data = b""
    with trio.fail_after(TIMEOUT):
        while not data.endswith(b"\n"):
            data += await stream.receive_some(1)
    return data


async def test_a_full_accept_queue_is_waited_out(sock_path: str, autojump_clock: trio.abc.Clock) -> None:
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


async def test_a_full_accept_queue_times_out_with_a_connect_error(
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


async def test_server_closing_mid_call(sock_path: str) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(scripted_peer, sock_path, read_request)
        async with open_client(sock_path) as client:
            with pytest.raises(
                ConnectionClosedError,
                match=r"^/.*: the server closed the connection before answering 'ping'$",
            ):
                await client.call("ping")
            assert client.closed
            with pytest.raises(ConnectionClosedError, match=r"^/.*\.sock: the server closed the connection$"):
                await client.call("ping")
            with pytest.raises(ConnectionClosedError, match=r"^/.*\.sock: the server closed the connection$"):
                await client.notify("ping")


async def test_refusal_is_named_when_the_server_closes(sock_path: str) -> None:
    async def refuse(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await read_request(stream)
        await stream.send_all(
            b'{"jsonrpc":"2.0","error":{"code":-32006,"message":"Server overloaded"},"id":null}\n'
        )

    async with trio.open_nursery() as nursery:
        await nursery.start(scripted_peer, sock_path, refuse)
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


async def test_garbage_from_the_server_is_a_protocol_error(sock_path: str) -> None:
    async def garbage(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(b"SSH-2.0-OpenSSH_9.6\r\n")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        await nursery.start(scripted_peer, sock_path, garbage)
        async with open_client(sock_path) as client:
            with pytest.raises(ProtocolError, match=r"^the server sent a line that is not JSON"):
                await client.call("ping")
        nursery.cancel_scope.cancel()


async def test_calls_after_the_block_ends_are_refused(server: Server, sock_path: str) -> None:
    async with open_client(sock_path) as client:
        pass
    with pytest.raises(ConnectionClosedError, match=r"^the client for .* is closed$"):
        await client.call("echo", 1)


async def test_a_full_server_says_so(sock_path: str, gates: Gates) -> None:
    limits = Limits(max_connections_per_uid=1)  # (root could still use the reserved connections)
    limited = functools.partial(serve, sock_path, make_methods(gates), limits=limits)
    async with trio.open_nursery() as nursery:
        await nursery.start(limited)
        async with open_client(sock_path) as first:
            assert await first.call("echo", 1) == 1
            for _ in range(20):  # whether the refusal arrives before or after the request is written
                async with open_client(sock_path) as second:
                    with pytest.raises(RpcError, match=r"^\[-32006\] Server overloaded$"):
                        await second.call("echo", 2)
            assert await first.call("echo", 3) == 3
        nursery.cancel_scope.cancel()


async def test_progress_events_while_a_call_runs(shared_demo: DemoProcess) -> None:
    async with open_client(shared_demo.path) as client:
        sub = (await client.call("rpc.subscribe", topic="progress"))["subscription"]
        seen: list[Any] = []

        async def watch() -> None:
            while len(seen) < 3:
                note = await client.wait_notification()
                seen.append((note.method, note.params["subscription"], note.params["data"]["done"]))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            assert await client.call("work", 3, 0.001) == {"steps": 3}
        assert seen == [("rpc.event", sub, 1), ("rpc.event", sub, 2), ("rpc.event", sub, 3)]


async def test_progress_reports_are_handed_on_and_forgotten(shared_demo: DemoProcess) -> None:
    """A call's reports are not kept once its callback had them (issue 9, 14)."""
    async with open_client(shared_demo.path) as client:
        watch = ReportWatch(client)
        with trio.fail_after(TIMEOUT):
            assert await client.call("work", 10_000, 0, progress=watch) == {"steps": 10_000}
        # The reader task may read once more before the caller's task runs the callback.
        watch.assert_forgotten(client, reads=2)


async def test_waiting_for_notifications_ends_when_the_connection_does(sock_path: str) -> None:
    async def close_soon(stream: trio.SocketStream) -> None:
        await read_request(stream)
        await stream.send_all(b'{"jsonrpc":"2.0","method":"rpc.event","params":{"data":1}}\n')

    async with trio.open_nursery() as nursery:
        await nursery.start(scripted_peer, sock_path, close_soon)
        async with open_client(sock_path) as client:
            await client.notify("hello")
            assert (await client.wait_notification()).params == {"data": 1}
            with pytest.raises(ConnectionClosedError, match=r"^/.*\.sock: the server closed the connection$"):
                await client.wait_notification()
