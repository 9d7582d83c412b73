"""Worker threads for ``blocking=True`` handlers, bounded per server and per connection.

trio's default is one limiter of 40 threads for the whole run, and a thread keeps its slot until
it returns, even after its call timed out and was abandoned: one client whose calls time out in
a handler that never returns held every slot, for everyone, long after it left.

The policy (specs/protocol.md §7): at most ``max_blocking_threads`` handlers run in threads for
live calls, at most ``max_blocking_per_connection`` of them for one connection; a call waits for
a slot (its timeout counts). A call that is cancelled or times out answers at once and gives its
slots back; its thread, which nothing can interrupt, runs on *abandoned*. Abandoned threads are
bounded separately, by ``max_blocking_threads`` too: past that many, a thread keeps its slots
until it returns. So a process never runs more than twice ``max_blocking_threads`` handler
threads, and hung handlers take slots from live calls only once that many are hung.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import trio

if TYPE_CHECKING:
    from .._service.limits import Limits
    from .._service.stats import ServerStats

__all__ = ["WorkerThreads"]

log = logging.getLogger("jrpc_unix.server")
T = TypeVar("T")


class WorkerThreads:
    """The server's handler threads: slots for live calls, and a count of abandoned ones."""

    def __init__(self, limits: Limits, stats: ServerStats) -> None:
        self._slots = trio.CapacityLimiter(limits.max_blocking_threads)
        self.per_connection = limits.max_blocking_per_connection
        self.max_abandoned = limits.max_blocking_threads
        self._stats = stats
        self._returned = trio.lowlevel.ParkingLot()

    @property
    def running(self) -> int:
        """Threads running a handler now, for a live call or abandoned."""
        return self._stats.threads_busy + self._stats.threads_abandoned

    async def run(self, func: Callable[[], T], connection_slots: trio.CapacityLimiter) -> T:
        """``func()`` in a worker thread once both a server and a connection slot are free."""
        slot = _Slot(self, connection_slots)
        try:
            return await trio.to_thread.run_sync(
                func, abandon_on_cancel=True, limiter=cast(trio.CapacityLimiter, slot)
            )
        finally:
            if slot.state == "busy":  # cancelled (or timed out) while its thread runs on
                slot.abandon()

    async def wait_returned(self, bound: float) -> None:
        """At exit: wait up to ``bound`` seconds for every thread to return (the process would
        end them mid-way), saying so in the log."""
        if not self.running:
            return
        log.info("waiting up to %s s for %s", bound, _threads(self.running))
        with trio.move_on_after(bound):
            while self.running:
                await self._returned.park()
        if self.running:
            log.warning("%s still running after %s s; exiting without them", _threads(self.running), bound)
        else:
            log.info("worker threads done")


def _threads(count: int) -> str:
    return f"{count} worker thread{'' if count == 1 else 's'}"


class _Slot:
    """trio's limiter protocol for one call: acquire both slots; give them back when the thread
    returns, or when the call is abandoned (unless too many threads are abandoned already)."""

    __slots__ = ("_conn", "_pool", "state")

    def __init__(self, pool: WorkerThreads, connection_slots: trio.CapacityLimiter) -> None:
        self._pool = pool
        self._conn = connection_slots
        self.state = "waiting"  # -> busy -> returned | abandoned | abandoned-holding

    async def acquire_on_behalf_of(self, borrower: Any) -> None:
        stats = self._pool._stats
        stats.threads_waiting += 1
        try:
            await self._conn.acquire_on_behalf_of(self)
            try:
                await self._pool._slots.acquire_on_behalf_of(self)
            except BaseException:
                self._conn.release_on_behalf_of(self)
                raise
        finally:
            stats.threads_waiting -= 1
        stats.threads_busy += 1
        self.state = "busy"

    def _release_slots(self) -> None:
        self._pool._slots.release_on_behalf_of(self)
        self._conn.release_on_behalf_of(self)

    def abandon(self) -> None:
        stats = self._pool._stats
        stats.threads_busy -= 1
        stats.threads_abandoned += 1
        if stats.threads_abandoned <= self._pool.max_abandoned:
            self._release_slots()
            self.state = "abandoned"
        else:
            self.state = "abandoned-holding"

    def release_on_behalf_of(self, borrower: Any) -> None:
        """The thread returned (trio calls this on the event loop)."""
        stats = self._pool._stats
        if self.state == "busy":
            stats.threads_busy -= 1
            self._release_slots()
        else:
            stats.threads_abandoned -= 1
            if self.state == "abandoned-holding":
                self._release_slots()
        self.state = "returned"
        self._pool._returned.unpark_all()
