"""asyncio for the tests: an asyncio loop in a thread of the test process, the asyncio-hosted
server on it (:func:`served_on_asyncio`, the twin of :func:`helpers.ops.served`), and the asyncio
client behind the shared-contract face (:func:`helpers.client.connected`'s ``"asyncio"`` driver).

The loop is the stock one, or uvloop's (``uvloop=True``), so one test body runs under both.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from helpers import TIMEOUT
from jrpc_unix import Limits, Server
from jrpc_unix.aio import open_client, serving

__all__ = ["LoopThread", "asyncio_client", "served_on_asyncio", "until"]

T = TypeVar("T")


async def until(cond: Callable[[], Any], what: str, tick: float = 0.005) -> None:
    """The asyncio twin of :func:`helpers.until`: poll ``cond`` until it holds, or fail."""
    try:
        async with asyncio.timeout(TIMEOUT):
            while True:
                if cond():
                    return
                await asyncio.sleep(tick)
    except TimeoutError:
        raise AssertionError(f"timed out after {TIMEOUT} s waiting for {what}") from None


class LoopThread:
    """An asyncio event loop running in a daemon thread until :meth:`close`."""

    def __init__(self, uvloop: bool = False) -> None:
        if uvloop:
            import uvloop as uv

            self.loop: asyncio.AbstractEventLoop = uv.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="asyncio", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; its result, waited for at most TIMEOUT seconds."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(TIMEOUT)

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """:meth:`run` from a trio test, waiting in a worker thread."""
        return await trio.to_thread.run_sync(self.run, coro)

    def close(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_the_rest())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(TIMEOUT)
        assert not self._thread.is_alive(), "the asyncio loop did not stop"
        self.loop.close()


@contextlib.contextmanager
def served_on_asyncio(path: str, methods: Any, *, uvloop: bool = False, **options: Any) -> Iterator[Server]:
    """``jrpc_unix.aio.serving`` on an asyncio loop in a thread for the body; stopped after."""
    options.setdefault("limits", Limits(shutdown_grace=2.0))
    loop = LoopThread(uvloop)
    entered = asyncio.Event()
    leave = asyncio.Event()
    holder: list[Server] = []

    async def host() -> None:
        async with serving(path, methods, **options) as server:
            holder.append(server)
            entered.set()
            await leave.wait()

    async def start() -> asyncio.Task[None]:
        task = asyncio.create_task(host())
        waiter = asyncio.create_task(entered.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done():
            task.result()  # raises why the server did not start
        return task

    async def join(task: asyncio.Task[None]) -> None:
        await task

    try:
        task = loop.run(start())
    except BaseException:
        loop.close()
        raise
    try:
        yield holder[0]
    finally:
        loop.loop.call_soon_threadsafe(leave.set)
        try:
            loop.run(join(task))
        finally:
            loop.close()


_client_loops: dict[bool, LoopThread] = {}


@asynccontextmanager
async def asyncio_client(path: str, *, uvloop: bool = False) -> AsyncIterator[Any]:
    """``jrpc_unix.aio.open_client(path)`` on the tests' asyncio (or uvloop) loop in a thread,
    its coroutines awaitable from trio. The loop outlives the block (tests use a closed client)."""
    loop = _client_loops.get(uvloop)
    if loop is None:
        loop = _client_loops[uvloop] = LoopThread(uvloop)
    manager = open_client(path)
    client = await loop.arun(manager.__aenter__())
    try:
        yield _Bridged(client, loop)
    finally:
        await loop.arun(manager.__aexit__(None, None, None))


class _Bridged:
    """An asyncio object seen from trio: its coroutine methods run on the loop."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self.client = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        async def on_the_loop(*args: Any, **kwargs: Any) -> Any:
            async def call() -> Any:
                return await attr(*args, **kwargs)

            return await self._loop.arun(call())

        return on_the_loop

    @asynccontextmanager
    async def subscription(self, topic: str, **params: Any) -> AsyncIterator[Any]:
        sub = self.client.subscribe(topic, **params)
        await self._loop.arun(sub.__aenter__())
        try:
            yield _BridgedSubscription(sub, self._loop)
        finally:
            await self._loop.arun(sub.__aexit__(None, None, None))


class _BridgedSubscription:
    def __init__(self, sub: Any, loop: LoopThread) -> None:
        self.sub = sub
        self._loop = loop

    def __getattr__(self, name: str) -> Any:  # id, topic, dropped, closed
        return getattr(self.sub, name)

    async def next(self) -> Any:
        return await self._loop.arun(anext(self.sub, None))

    async def close(self) -> None:
        await self._loop.arun(self.sub.aclose())
