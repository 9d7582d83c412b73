"""The event loop a server runs on: the hop onto it from other threads, and a connection's nursery.

A server's state (topics, subscriptions, connections) belongs to its event loop's thread and is
never locked. What other threads may do to it (:meth:`Server.publish`, a ``blocking=True``
handler's ``progress``) hops onto the loop first, through :meth:`EventLoop.call`. So does what
the *host* loop's own code does on the loop's thread when trio runs as a guest of asyncio
(:mod:`jrpc_unix.aio`): an asyncio task is on the right thread but outside every trio task.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVarTuple, Unpack

import trio

__all__ = ["EventLoop", "TaskNursery"]

Ts = TypeVarTuple("Ts")


class EventLoop:
    """The thread and trio token of the run a server serves in, once it serves."""

    __slots__ = ("_thread", "_token")

    def __init__(self) -> None:
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread = 0

    def enter(self) -> None:
        """Take the current trio run as the server's (called on it, as serving starts)."""
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()

    def call(self, fn: Callable[[Unpack[Ts]], object], *args: *Ts) -> None:
        """``fn(*args)`` on the event loop: at once from one of its tasks (or before it runs);
        from another thread, waiting only for the loop to run it; from the host loop's code on
        its thread (an asyncio task), queued in order (waiting there would wait for itself);
        nothing once the run is over."""
        token = self._token
        if token is None:
            fn(*args)
        elif threading.get_ident() != self._thread:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(fn, *args, trio_token=token)
        elif _in_trio_task():
            fn(*args)
        else:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(fn, *args)


def _in_trio_task() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:  # the host loop's code, between two ticks of the guest run
        return False
    return True


class TaskNursery:
    """A connection's nursery while it is open: where its calls, queue, pumps and flushes run.

    Made with the connection, opened by its ``serve``; the parts that start tasks hold this,
    not the connection.
    """

    __slots__ = ("nursery",)

    def __init__(self) -> None:
        self.nursery: trio.Nursery | None = None

    def start_soon(self, fn: Callable[[Unpack[Ts]], Awaitable[object]], *args: *Ts) -> None:
        nursery = self.nursery
        assert nursery is not None, "the connection's nursery is closed"
        nursery.start_soon(fn, *args)
