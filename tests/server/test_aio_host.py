"""The server as an asyncio program's guest (``jrpc_unix.aio``): the embedding contract.

Each test is an asyncio program (``asyncio.run``, or uvloop's loop: ``loop`` is parametrized)
serving with ``jrpc_unix.aio`` and calling over real sockets, with the asyncio client or raw
asyncio streams. Waits are bounded (``asyncio.timeout``) and driven by events, never by sleeps
that hope: a handler says it started by setting an ``asyncio.Event`` of the app.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
from helpers import TIMEOUT
from helpers.aio import served_on_asyncio, until
from helpers.ops import served

from jrpc_unix import (
    AddressInUseError,
    Limits,
    Methods,
    RpcError,
    ServerSetupError,
    current_context,
    open_client,
)
from jrpc_unix.aio import open_client as aio_open_client
from jrpc_unix.aio import serve, serving

pytestmark = pytest.mark.parametrize("loop", ["asyncio", "uvloop"])


def run(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    """Run the asyncio program ``main`` on ``loop``'s event loop, bounded by TIMEOUT."""

    async def bounded() -> None:
        async with asyncio.timeout(TIMEOUT):
            await main()

    factory = None
    if loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(bounded())


async def raw_exchange(path: str, data: bytes) -> list[Any]:
    """Send ``data``, half-close, and read every answer line until the server closes."""
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(data)
    await writer.drain()
    writer.write_eof()
    out = await reader.read()
    writer.close()
    return [json.loads(line) for line in out.splitlines()]


def test_handlers_run_on_the_apps_loop_and_touch_its_objects(loop: str, sock_path: str) -> None:
    """Plain handlers run on the loop's thread, async ones as its tasks, blocking ones in a worker
    thread; ``current_context()`` works in all three."""
    methods = Methods()
    seen: dict[str, Any] = {}

    async def main() -> None:
        app_loop, app_thread = asyncio.get_running_loop(), threading.get_ident()
        queue: asyncio.Queue[str] = asyncio.Queue()

        @methods.add
        def plain(item: str) -> list[Any]:
            queue.put_nowait(item)  # the app's queue, no run_coroutine_threadsafe
            return [threading.get_ident() == app_thread, asyncio.get_running_loop() is app_loop,
                    current_context().method]  # fmt: skip

        @methods.add
        async def coro() -> list[Any]:
            task = asyncio.current_task()
            await asyncio.sleep(0)
            return [task is not None and task.get_loop() is app_loop, current_context().request_id]

        @methods.add(blocking=True)
        def in_thread() -> list[Any]:
            return [threading.get_ident() != app_thread, current_context().method]

        async with serving(sock_path, methods), aio_open_client(sock_path) as client:
            seen["plain"] = await client.call("plain", "hello")
            seen["queued"] = queue.get_nowait()
            seen["coro"] = await client.call("coro")
            seen["in_thread"] = await client.call("in_thread")

    run(loop, main)
    assert seen == {
        "plain": [True, True, "plain"],
        "queued": "hello",
        "coro": [True, 2],
        "in_thread": [True, "in_thread"],
    }


def test_a_notification_is_a_barrier_and_calls_answer_in_their_order(loop: str, sock_path: str) -> None:
    methods = Methods()
    log: list[str] = []

    @methods.add
    async def record(item: str, delay: float) -> None:
        await asyncio.sleep(delay)
        log.append(item)

    @methods.add
    def seen() -> list[str]:
        return list(log)

    def msg(method: str, params: list[Any], rid: int | None = None) -> bytes:
        obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if rid is not None:
            obj["id"] = rid
        return json.dumps(obj).encode() + b"\n"

    answers: list[Any] = []

    async def main() -> None:
        async with serving(sock_path, methods):
            data = (
                msg("record", ["a", 0.05]) + msg("seen", [], 1) + msg("record", ["b", 0]) + msg("seen", [], 2)
            )
            answers.extend(await raw_exchange(sock_path, data))  # half-closed: all answered, then EOF

    run(loop, main)
    assert answers == [
        {"jsonrpc": "2.0", "result": ["a"], "id": 1},
        {"jsonrpc": "2.0", "result": ["a", "b"], "id": 2},
    ]


def test_rpc_cancel_and_timeouts_cancel_the_asyncio_task(loop: str, sock_path: str) -> None:
    """A client task cancelled mid-call sends ``rpc.cancel``: the handler's task is cancelled and
    the connection stays usable; a handler timeout cancels it too."""
    methods = Methods()
    cancelled: list[str] = []

    async def main() -> None:
        started = asyncio.Event()

        @methods.add
        async def hold(name: str) -> None:
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        @methods.add(timeout=0.05)
        async def hold_briefly() -> None:
            await hold("timeout")

        async with serving(sock_path, methods) as server, aio_open_client(sock_path) as client:
            call = asyncio.create_task(client.call("hold", "rpc.cancel"))
            await started.wait()
            call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            await until(lambda: cancelled, "the handler to be cancelled")
            with pytest.raises(RpcError, match=r"^\[-32004\]"):
                await client.call("hold_briefly")
            assert await client.call("rpc.stats") is not None  # the connection goes on
            assert server.stats.in_flight == 0

    run(loop, main)
    assert cancelled == ["rpc.cancel", "timeout"]


def test_a_disconnect_the_grace_and_the_app_cancel_asyncio_handlers_each_answered(
    loop: str, sock_path: str
) -> None:
    methods = Methods()
    cancelled: list[str] = []
    answers: list[Any] = []

    async def main() -> None:
        started = asyncio.Queue[str]()

        @methods.add
        async def hold(name: str) -> None:
            started.put_nowait(name)
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.append(name)
                raise

        @methods.add
        async def cancelled_by_the_app() -> None:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)

        limits = Limits(shutdown_grace=0.05)  # hold never ends by itself: no race with the grace
        async with serving(sock_path, methods, limits=limits):
            reader, writer = await asyncio.open_unix_connection(sock_path)
            writer.write(b'{"jsonrpc":"2.0","method":"hold","params":["disconnect"],"id":1}\n')
            assert await started.get() == "disconnect"
            writer.close()  # the caller leaves: its call is cancelled
            await until(lambda: cancelled == ["disconnect"], "the handler to be cancelled")
            async with aio_open_client(sock_path) as client:
                with pytest.raises(RpcError, match=r"^\[-32603\]"):
                    await client.call("cancelled_by_the_app")
            reader, writer = await asyncio.open_unix_connection(sock_path)
            writer.write(b'{"jsonrpc":"2.0","method":"hold","params":["grace"],"id":2}\n')
            assert await started.get() == "grace"
        answers.append(json.loads(await reader.readline()))  # the grace is over: answered, then EOF
        assert await reader.read() == b""
        writer.close()

    run(loop, main)
    assert cancelled == ["disconnect", "grace"]
    assert answers[0]["id"] == 2
    assert answers[0]["error"]["code"] == -32002


def test_cancelling_serve_drains_asyncio_handlers_and_removes_the_socket(loop: str, sock_path: str) -> None:
    methods = Methods()
    results: list[Any] = []

    async def main() -> None:
        started, release = asyncio.Event(), asyncio.Event()

        @methods.add
        async def job() -> str:
            started.set()
            await release.wait()
            return "finished"

        serving_task = asyncio.create_task(serve(sock_path, methods, limits=Limits(shutdown_grace=TIMEOUT)))
        await until(lambda: os.path.exists(sock_path), "the server to listen")
        async with aio_open_client(sock_path) as client:
            call = asyncio.create_task(client.call("job"))
            await started.wait()
            serving_task.cancel()  # a graceful stop: the running call may finish
            await until(lambda: not os.path.exists(sock_path), "the socket to go")  # at once
            release.set()
            results.append(await call)
        with pytest.raises(asyncio.CancelledError):
            await serving_task

    run(loop, main)
    assert results == ["finished"]
    assert not os.path.exists(sock_path)


def test_publish_from_asyncio_code_reaches_subscribers(loop: str, sock_path: str) -> None:
    methods = Methods()
    methods.add_topic("ticks", "published by the app")
    got: list[Any] = []

    async def main() -> None:
        async with (
            serving(sock_path, methods) as server,
            aio_open_client(sock_path) as client,
            client.subscribe("ticks") as sub,
        ):
            for i in range(3):
                server.publish("ticks", i)  # from an asyncio task, not a trio one
            async for data in sub:
                got.append(data)
                if len(got) == 3:
                    break

    run(loop, main)
    assert got == [0, 1, 2]


def test_a_bare_async_for_subscribes_at_its_first_step(loop: str, sock_path: str) -> None:
    """The issue's spelling, ``async for event in c.subscribe(...)``, without the block."""
    methods = Methods()
    methods.add_topic("ticks", "published by the app")
    got: list[Any] = []

    async def main() -> None:
        async with serving(sock_path, methods) as server, aio_open_client(sock_path) as client:

            async def publish_once_subscribed() -> None:
                await until(lambda: server.stats.subscriptions, "the subscription")
                for i in range(3):
                    server.publish("ticks", i)

            task = asyncio.create_task(publish_once_subscribed())
            sub = client.subscribe("ticks")
            async for data in sub:
                got.append(data)
                if len(got) == 3:
                    break
            await task
            assert not sub.closed, "a break does not unsubscribe"
            await sub.aclose()
            assert sub.closed
            await until(lambda: not server.stats.subscriptions, "the unsubscribe")

    run(loop, main)
    assert got == [0, 1, 2]


def test_a_topic_producer_is_an_asyncio_async_generator(loop: str, sock_path: str) -> None:
    """A service's producer runs on the app's loop like its handlers; the server's own ``stats``
    topic (trio code) still works beside it; unsubscribing cancels the producer."""
    methods = Methods()
    got: list[Any] = []
    closed: list[str] = []

    async def counting(start: int = 0) -> AsyncIterator[int]:
        try:
            for i in range(start, start + 1000):
                await asyncio.sleep(0)  # asyncio's: this runs as the app's task
                yield i
        finally:
            closed.append("producer")

    methods.add_topic("count", "counts up", counting)

    async def main() -> None:
        async with serving(sock_path, methods), aio_open_client(sock_path) as client:
            async with client.subscribe("count", start=5) as counts:
                async for data in counts:
                    got.append(data)
                    if len(got) == 3:
                        break
            async with client.subscribe("stats", interval=0.05) as stats:
                got.append(sorted(await anext(stats)))
            await until(lambda: closed, "the producer to be closed")
            assert await client.call("rpc.stats") is not None

    run(loop, main)
    assert got == [5, 6, 7, ["methods", "server"]]
    assert closed == ["producer"]


def test_progress_from_an_asyncio_handler_precedes_its_answer(loop: str, sock_path: str) -> None:
    methods = Methods()
    reports: list[Any] = []

    @methods.add
    async def steps(n: int) -> int:
        ctx = current_context()
        for i in range(1, n + 1):
            ctx.progress(i, n)
            await asyncio.sleep(0)
        return n

    async def main() -> None:
        async with serving(sock_path, methods), aio_open_client(sock_path) as client:
            assert await client.call("steps", 5, progress=lambda *r: reports.append(r)) == 5

    run(loop, main)
    assert reports == [(i, 5, None) for i in range(1, 6)]


def test_startup_errors_raise_on_entry_and_stop_from_a_handler_ends_serve(loop: str, sock_dir: str) -> None:
    methods = Methods()
    taken = os.path.join(sock_dir, "taken.sock")
    path = os.path.join(sock_dir, "s.sock")

    @methods.add
    def shutdown() -> str:
        current_context().server.stop()
        return "stopping"

    async def main() -> None:
        with served(taken, Methods()), pytest.raises(AddressInUseError):
            async with serving(taken, Methods()):
                pass
        async with serving(path, Methods()):
            one_per_thread = r"^one jrpc_unix.aio server per event loop thread: .* serves already"
            with pytest.raises(ServerSetupError, match=one_per_thread):
                await serve(taken, Methods())
        serving_task = asyncio.create_task(serve(path, methods))
        await until(lambda: os.path.exists(path), "the server to listen")
        async with aio_open_client(path) as client:
            assert await client.call("shutdown") == "stopping"
        await serving_task  # returns: stopped, not cancelled

    run(loop, main)
    assert not os.path.exists(path)


async def test_the_trio_client_against_an_asyncio_hosted_server(loop: str, sock_path: str) -> None:
    methods = Methods()

    @methods.add
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    methods.add_topic("t")
    with served_on_asyncio(sock_path, methods, uvloop=loop == "uvloop") as server:
        async with open_client(sock_path) as client:
            assert await client.call("double", 21) == 42
            with trio.fail_after(TIMEOUT):
                async with client.subscribe("t") as sub:
                    await trio.to_thread.run_sync(server.publish, "t", "from another thread")
                    assert await anext(sub) == "from another thread"


def test_the_servers_own_async_methods_stay_trio_code(loop: str, sock_path: str) -> None:
    """Only the service's ``async def`` handlers are asyncio's: an ``rpc.*`` one (``rpc.health``,
    which runs its checks with trio's nursery, timeout and worker thread) is still awaited by
    trio under the asyncio host."""

    async def main() -> None:
        async with serving(sock_path, Methods()) as server, aio_open_client(sock_path) as client:
            server.add_health_check("plain", lambda: "ok")
            assert await client.call("rpc.health") == {
                "status": "serving",
                "checks": {"plain": {"status": "serving", "detail": "ok"}},
            }

    run(loop, main)
