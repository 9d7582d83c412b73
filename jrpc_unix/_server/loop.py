"""The event loop a server runs on: the hop onto it from other threads, and a connection's nursery.

A server's state (topics, subscriptions, connections) belongs to its event loop's thread and is
never locked. What other threads may do to it (:meth:`Server.publish`, a ``blocking=True``
handler's ``progress``) hops onto the loop first, through :meth:`EventLoop.call`.
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
        """``fn(*args)`` on the event loop: at once on its own thread (or before it runs);
        from another thread, waiting only for the loop to run it; nothing once the run is over."""
        if self._token is None or threading.get_ident() == self._thread:
            fn(*args)
            return
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(fn, *args, trio_token=self._token)


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
