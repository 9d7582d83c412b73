"""A server inside an asyncio program: trio runs as a guest of the running asyncio loop.

``trio.lowlevel.start_guest_run`` runs trio's scheduler in callbacks of the host loop, on the
host loop's thread (only trio's wait for I/O sits in a helper thread), so no second event loop
thread exists and the app's state is never touched from two threads. Which code runs where
(specs/protocol.md, "Which loop runs a handler"):

* a plain function handler runs inline, on the asyncio loop's thread (it may use the app's
  objects, ``asyncio.Queue.put_nowait`` included);
* an ``async def`` handler is an asyncio coroutine: it runs as a task of the app's loop
  (:class:`AsyncioHandlers`, the server's :data:`~.shared.AwaitHandler`), cancelled when the call
  is (``rpc.cancel``, a disconnect, its timeout, the end of the grace);
* a ``blocking=True`` handler runs in a worker thread, as under trio;
* a topic producer of the service is an asyncio async generator, each event asked for the same
  way (:class:`~.shared.HostedEvents`).

Asyncio imports stay in this module, its client twin and :mod:`jrpc_unix.aio`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio
from outcome import Outcome

from .._errors import ServerSetupError, sole_exception
from .server import Server

__all__ = ["AsyncioHandlers", "GuestRun", "guest_serving"]


class AsyncioHandlers:
    """Awaits ``async def`` handlers as tasks of the asyncio loop (an :data:`~.shared.AwaitHandler`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.running: set[asyncio.Task[Any]] = set()  # cancelled ones may not have ended yet

    async def __call__(self, func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # The task copies this trio task's contextvars, so current_context() works in it.
        task = self._loop.create_task(func(*args, **kwargs))
        self.running.add(task)
        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def finished(task: asyncio.Task[Any]) -> None:
            self.running.discard(task)
            # Through the run's queue, behind any progress or publish the handler queued the
            # same way (Server.publish from asyncio code): they reach the wire before the answer.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        task.add_done_callback(finished)
        try:
            await done.wait()
        except BaseException:  # cancelled (rpc.cancel, disconnect, timeout, grace over)
            task.cancel()  # it ends at its next await; the call is answered at once
            raise
        if task.cancelled():  # by the app (say, asyncio.run ending), not by the server
            raise RuntimeError("the handler's asyncio task was cancelled")
        return task.result()

    async def wait_ended(self, bound: float) -> None:
        """At exit: give cancelled handler tasks up to ``bound`` seconds to end."""
        if self.running:
            await asyncio.wait(list(self.running), timeout=bound)


class GuestRun:
    """One server's trio run as a guest of the running asyncio loop."""

    def __init__(self, server: Server, path: str) -> None:
        self.server = server
        self._loop = asyncio.get_running_loop()
        self.handlers = AsyncioHandlers(self._loop)
        server._shared.await_handler = self.handlers
        self._started: asyncio.Future[None] = self._loop.create_future()
        self.done: asyncio.Future[Outcome[None]] = self._loop.create_future()
        self._path = path

    def started(self, value: object = None) -> None:
        """The server is listening (``serve`` calls this as its task status)."""
        if not self._started.done():
            self._started.set_result(None)

    def _finished(self, result: Outcome[None]) -> None:
        if not self._started.done():
            self._started.set_result(None)  # the outcome says why
        self.done.set_result(result)

    async def wait(self) -> None:
        """Until the run ends (a cancelled waiter leaves the run's own future alone)."""
        await asyncio.shield(self.done)

    async def _serve(self) -> None:
        await self.server.serve(self._path, task_status=self)  # trio's TaskStatus: it has started()

    async def start(self) -> None:
        """Start the guest run; return once listening, or raise why it could not."""
        if trio.lowlevel.in_trio_run():  # trio keeps one run per thread
            raise ServerSetupError(
                f"one jrpc_unix.aio server per event loop thread: cannot serve {self._path}, "
                "a trio run (another server) serves already on this thread"
            )
        trio.lowlevel.start_guest_run(
            self._serve,
            run_sync_soon_threadsafe=self._loop.call_soon_threadsafe,
            run_sync_soon_not_threadsafe=self._loop.call_soon,
            done_callback=self._finished,
            host_uses_signal_set_wakeup_fd=True,  # asyncio's signal handling stays the app's
            strict_exception_groups=True,
        )
        try:
            await asyncio.shield(self._started)
        except asyncio.CancelledError:
            await self.stop()
            raise
        if self.done.done():
            await self.stop()  # raises why it ended

    async def stop(self) -> None:
        """Stop gracefully and wait for the run's end (even if cancelled meanwhile: the drain is
        bounded by the server's graces); raise what ended it, if it failed."""
        self.server.stop()
        cancelled = False
        while not self.done.done():
            try:
                await asyncio.shield(self.done)
            except asyncio.CancelledError:
                cancelled = True
        await self.handlers.wait_ended(self.server.limits.thread_grace)
        try:
            self.done.result().unwrap()
        except BaseExceptionGroup as group:
            raise sole_exception(group) from None
        if cancelled:
            raise asyncio.CancelledError


@contextlib.asynccontextmanager
async def guest_serving(server: Server, path: str) -> AsyncIterator[GuestRun]:
    """Serve in the running asyncio loop for the block; leaving it stops gracefully."""
    run = GuestRun(server, path)
    await run.start()
    try:
        yield run
    finally:
        await run.stop()
