"""Notice that a peer closed while nobody reads its connection, without polling.

A connection's reader sees a close as EOF, but only while it reads. It stops reading when the
client half-closed (its calls and events still run) and while its queue of waiting requests is
full; a client that closes then must still free its slot and cancel its calls at once. One epoll
set per server holds those sockets, edge-triggered on EPOLLHUP alone: the kernel reports HUP on
a UNIX stream socket only once both directions are shut (the peer closed, not just shut its
write side), and data arriving does not wake it. Linux only (``select.epoll``); elsewhere the
watch is a no-op and such a close is noticed when the reader reads again.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import AsyncIterator, Callable

import trio

__all__ = ["HangupWatch", "closed_entirely"]

_EPOLL = getattr(select, "epoll", None)


def closed_entirely(fd: int) -> bool:
    """After EOF: did the peer close entirely (POLLHUP), not just shut its write side?"""
    if fd < 0:
        return True
    poller = select.poll()
    poller.register(fd, select.POLLHUP)
    return any(ev & select.POLLHUP for _, ev in poller.poll(0))


class HangupWatch:
    """Calls ``on_hangup()`` once for a watched socket whose peer has closed."""

    def __init__(self) -> None:
        self._epoll: select.epoll | None = None  # while run() runs
        self._callbacks: dict[int, Callable[[], None]] = {}

    def watch(self, fd: int, on_hangup: Callable[[], None]) -> bool:
        """Watch ``fd`` (an open socket; reported at once if already hung up); False if not
        (not running, or no epoll on this platform)."""
        if self._epoll is None or fd < 0 or fd in self._callbacks:
            return False
        self._epoll.register(fd, select.EPOLLHUP | select.EPOLLET)
        self._callbacks[fd] = on_hangup
        return True

    def unwatch(self, fd: int) -> None:
        """Stop watching ``fd``; call it before the socket is closed (its number is reused)."""
        if self._callbacks.pop(fd, None) is not None:
            assert self._epoll is not None
            self._epoll.unregister(fd)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Watch for the body of the ``async with`` (the server's life)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._run)
            yield
            nursery.cancel_scope.cancel()

    async def _run(self) -> None:
        """Deliver hang-ups until cancelled; then release the epoll set (watching ends)."""
        if _EPOLL is None:
            return
        epoll = self._epoll = _EPOLL()
        try:
            while True:
                await trio.lowlevel.wait_readable(epoll.fileno())
                for fd, _ in epoll.poll(0):
                    callback = self._callbacks.get(fd)
                    if callback is not None:
                        self.unwatch(fd)
                        callback()
        finally:
            self._epoll = None
            self._callbacks.clear()
            trio.lowlevel.notify_closing(epoll.fileno())
            epoll.close()
