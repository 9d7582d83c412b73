"""The write side of a connection: queue answers, write them framed, one writer at a time.

Whoever finds the writer idle writes (the reader, a finishing call, a subscription pump), so
writes never interleave and the answers of one read go out in one ``send_all``. ``pending``
counts the bytes queued or being written, which is what back-pressure is measured against.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

__all__ = ["Writer"]


class Writer:
    """Answer lines for one stream; ``on_broken`` runs once the peer can no longer read."""

    __slots__ = (
        "_changed",
        "_lines",
        "_on_broken",
        "_queued",
        "_stream",
        "broken",
        "encode",
        "pending",
        "writes",
        "writing",
    )

    def __init__(
        self, stream: trio.abc.SendStream, changed: trio.lowlevel.ParkingLot, on_broken: Callable[[], None]
    ) -> None:
        self._stream = stream
        self._changed = changed  # unparked after each write: output drained
        self._on_broken = on_broken
        self._lines: list[bytes] = []
        #: The connection's framing, once known (None: newline, inlined here).
        self.encode: Callable[[list[bytes]], bytes] | None = None
        self._queued = 0  # what the queued lines count in ``pending``
        self.pending = 0  # bytes queued or being written
        self.writing = False
        self.broken = False
        self.writes = 0  # send_all calls completed, for the idle watchdog

    @property
    def unsent(self) -> bool:
        """Lines are queued that no write has taken yet."""
        return bool(self._lines)

    def abandon(self) -> None:
        """The peer is gone: drop what waits and take nothing more (a write under way fails)."""
        self.broken = True
        self._lines.clear()
        self.pending = self._queued = 0
        self._changed.unpark_all()

    def deliver(self, answer: bytes | None) -> None:
        """Queue one answer line."""
        if answer is not None and not self.broken:  # None: nothing to send
            self._lines.append(answer)
            self.pending += len(answer) + 1
            self._queued += len(answer) + 1

    async def wait_below(self, limit: int) -> None:
        """Wait until fewer than ``limit`` bytes wait to be sent (or the peer is gone)."""
        while self.pending > limit and not self.broken:
            await self._changed.park()

    async def flush(self) -> None:
        """Write the queued lines unless another task is already writing (it will take them)."""
        if self.writing:
            return
        self.writing = True
        try:
            while self._lines and not self.broken:
                encode, taken = self.encode, self._queued
                data = b"\n".join(self._lines) + b"\n" if encode is None else encode(self._lines)
                self._lines.clear()
                self._queued = 0
                try:
                    if data:  # (a framing may have no place for some: unixsock drops pushes)
                        await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self.abandon()
                    self._on_broken()
                else:
                    if not self.broken:
                        self.pending -= taken
                    self.writes += 1
                self._changed.unpark_all()
        finally:
            self.writing = False
