"""The asyncio client's transport: one reader task, callers waiting on asyncio events.

:class:`AsyncioTransport` is the third driver of the sans-IO
:class:`~.._wire.conversation.Conversation` (after the blocking and the trio transports), and the
same :class:`~.trio_client.AsyncClient` front serves it (:mod:`.transport` states the seam). It
needs no writer task: asyncio's ``StreamWriter.write`` takes a whole message into the transport's
buffer at once, so writes never interleave and a cancelled caller never leaves half a request on
the wire; ``drain`` is awaited for back-pressure only.

A caller that gives up (its task cancelled) stops the server's work too: its request was written
whole already, so ``rpc.cancel`` follows, written without waiting; its late answer is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from .._errors import ConnectionClosedError, ProtocolError
from .._wire.client_framing import ClientFraming
from .._wire.conversation import Conversation, Exchange
from .connect import connecting
from .waiting import WaitingCallers

__all__ = ["AsyncioTransport", "connect_unix"]


class AsyncioTransport(WaitingCallers):
    """One connection's reader and waiting callers (an :class:`~.transport.AsyncTransport`).

    Run :meth:`read_loop` as a task for as long as it is used, and :meth:`shut` it afterwards.
    """

    def __init__(
        self,
        address: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conv: Conversation,
        framing: ClientFraming | None = None,
    ) -> None:
        super().__init__(address, conv, asyncio.Event)
        self.progress_lock = asyncio.Lock()
        self._reader = reader
        self._writer = writer
        self._framing = framing  # another framing than newline JSON: bytes translated each way

    def _write(self, data: bytes) -> None:
        self._writer.write(data if self._framing is None else self._framing.outgoing(data))

    # -- what callers wait for -------------------------------------------------------------

    async def exchange(self, pair: tuple[Exchange, bytes]) -> Exchange:
        exchange, data = pair
        wake = self._expect(exchange)
        try:
            self._write(data)  # whole, at once: from here on it counts as sent
        except BaseException:
            self._given_up(exchange, sent=False)
            raise
        try:
            await self._drain()
            await self._wait_answered(exchange, wake)
        finally:
            self._given_up(exchange, sent=True)
        return self._answered(exchange)

    async def send(self, data: bytes) -> None:
        self._check_open()
        self._write(data)
        await self._drain()
        if self._write_failed is not None:
            self._check_open()
            raise ConnectionClosedError(f"{self.address}: the notification was not sent")

    def send_soon(self, data: bytes) -> None:
        if self._closed is None and self._write_failed is None and not self._writer.is_closing():
            self._write(data)

    async def _drain(self) -> None:
        """Wait while the socket's buffers are full. A failed write is noted; callers keep
        waiting, as the reader still delivers what the server said before it closed (an
        overloaded server's refusal), then ends them at EOF."""
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._write_failed = f"writing failed ({exc or 'connection lost'})"

    # -- the reader task -------------------------------------------------------------------

    async def read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(65536)
                if data and self._framing is not None:
                    data = self._framing.incoming(data)
                    if not data:
                        continue  # no whole message yet
                self._received(data)
                if not data:
                    self.shut("the server closed the connection")
                    return
        except (ConnectionError, OSError) as exc:
            self.shut(f"reading failed ({exc or 'connection lost'})")
        except ProtocolError as exc:
            self.shut(exc)

    def shut(self, reason: str | ProtocolError) -> None:
        """The connection is over: fail every waiting caller and reader."""
        self._end(reason)


async def connect_unix(address: str, connect_timeout: float | None) -> socket.socket:
    """A socket connected to ``address``, retrying while its accept queue is full (EAGAIN), up to
    ``connect_timeout`` (see :func:`~.connect.connecting`)."""
    clock = asyncio.get_running_loop().time
    with contextlib.closing(connecting(address, connect_timeout, clock)) as steps:
        for step in steps:
            if isinstance(step, socket.socket):
                return step
            await asyncio.sleep(step)
    raise AssertionError("connecting() ends with the socket")
