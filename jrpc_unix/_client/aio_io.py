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
import math
import socket
from typing import Any

from .._address import socket_name
from .._errors import ConnectionClosedError, JrpcUnixError, ProtocolError, RpcError
from .._wire.conversation import Conversation, Exchange, Notification
from .._wire.events import Answered, FeedChanged, MustSend, NotificationArrived, ReportsArrived
from .._wire.feeds import END, UNSUBSCRIBED, Feed
from .connect import connect_error

__all__ = ["AsyncioTransport", "connect_unix"]

#: While the accept queue is full, retry after 1 ms, doubling up to 50 ms between tries.
_FIRST_RETRY, _LAST_RETRY = 0.001, 0.05


class AsyncioTransport:
    """One connection's reader and waiting callers (an :class:`~.transport.AsyncTransport`).

    Run :meth:`read_loop` as a task for as long as it is used, and :meth:`shut` it afterwards.
    """

    def __init__(
        self, address: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conv: Conversation
    ) -> None:
        self.address = address
        self.conversation = conv
        self.progress_lock = asyncio.Lock()
        self._reader = reader
        self._writer = writer
        self._waiters: dict[Exchange, asyncio.Event] = {}
        self._feed_waiters: dict[Feed, asyncio.Event] = {}
        self._closed: str | ProtocolError | None = None  # why the connection is over
        self._write_failed: str | None = None  # why nothing more can be sent
        self._arrived = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # -- what callers wait for -------------------------------------------------------------

    async def exchange(self, pair: tuple[Exchange, bytes]) -> Exchange:
        exchange, data = pair
        self._check_open()
        wake = self._waiters[exchange] = asyncio.Event()
        sent = False
        try:
            self._writer.write(data)
            sent = True
            await self._drain()
            while True:
                await wake.wait()
                wake = self._waiters[exchange] = asyncio.Event()
                exchange.hand_on_reports()
                if exchange.done or self._closed is not None:
                    break
        finally:
            del self._waiters[exchange]
            if not exchange.done:  # given up: never waits, this may run while cancelled
                cancel = self.conversation.abandon(exchange, sent=sent)  # its late answer is dropped
                if cancel:
                    self.send_soon(cancel)
        if not exchange.done:
            raise self._closed_error(exchange.label)
        return exchange

    async def send(self, data: bytes) -> None:
        self._check_open()
        self._writer.write(data)
        await self._drain()
        if self._write_failed is not None:
            self._check_open()
            raise ConnectionClosedError(f"{self.address}: the notification was not sent")

    def send_soon(self, data: bytes) -> None:
        if self._closed is None and self._write_failed is None and not self._writer.is_closing():
            self._writer.write(data)

    async def _drain(self) -> None:
        """Wait while the socket's buffers are full. A failed write is noted; callers keep
        waiting, as the reader still delivers what the server said before it closed (an
        overloaded server's refusal), then ends them at EOF."""
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            self._write_failed = f"writing failed ({exc or 'connection lost'})"

    async def next_event(self, feed: Feed) -> Any:
        while not feed.events:
            if feed.ended == UNSUBSCRIBED:
                return END
            if feed.ended is not None:
                raise self._closed_error()
            waiter = self._feed_waiters.get(feed)
            if waiter is None:
                waiter = self._feed_waiters[feed] = asyncio.Event()
            await waiter.wait()
        return feed.events.popleft()

    def feed_changed(self, feed: Feed) -> None:
        waiter = self._feed_waiters.pop(feed, None)
        if waiter is not None:
            waiter.set()

    async def next_notification(self) -> Notification:
        inbox = self.conversation.inbox
        while not inbox:
            self._check_open()
            await self._arrived.wait()
        return inbox.popleft()

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed_error()
        if self._write_failed is not None:
            raise ConnectionClosedError(f"{self.address}: {self._write_failed}")

    def _closed_error(self, label: str | None = None) -> JrpcUnixError:
        reason, refused = self._closed, self.conversation.refused
        if refused is not None:  # (the caller may have asked after the refusal had come)
            return RpcError(refused.code, refused.message, refused.data)
        if isinstance(reason, ProtocolError):
            return ProtocolError(str(reason))
        if label is not None:
            return self.conversation.closed_error(f"{self.address}: {reason} before answering {label}")
        if reason == CLIENT_CLOSED:
            return ConnectionClosedError(f"the client for {self.address} is closed")
        return ConnectionClosedError(f"{self.address}: {reason}")

    # -- the reader task -------------------------------------------------------------------

    async def read_loop(self) -> None:
        conv = self.conversation
        try:
            while True:
                data = await self._reader.read(65536)
                arrived = False
                for event in conv.receive_data(data) if data else conv.receive_eof():
                    match event:
                        case Answered(exchange) | ReportsArrived(exchange):
                            if (waiter := self._waiters.get(exchange)) is not None:
                                waiter.set()
                        case FeedChanged(feed):
                            self.feed_changed(feed)
                        case NotificationArrived():
                            arrived = True
                        case MustSend(message):  # a subscription whose subscriber gave up: end it
                            self.send_soon(message)
                if arrived:
                    self._arrived.set()
                    self._arrived = asyncio.Event()
                if not data:
                    self.shut("the server closed the connection")
                    return
        except (ConnectionError, OSError) as exc:
            self.shut(f"reading failed ({exc or 'connection lost'})")
        except ProtocolError as exc:
            self.shut(exc)

    def shut(self, reason: str | ProtocolError) -> None:
        """The connection is over: fail every waiting caller and reader."""
        if self._closed is None:
            self._closed = reason
        for event in self._waiters.values():
            event.set()
        for ended in self.conversation.connection_lost():
            self.feed_changed(ended.feed)
        self._arrived.set()


CLIENT_CLOSED = "the client was closed"


async def connect_unix(address: str, connect_timeout: float | None) -> socket.socket:
    """A socket connected to ``address``, retrying while its accept queue is full (EAGAIN), up to
    ``connect_timeout`` (see :func:`~.trio_io.connect_unix`: a UNIX connect never completes later)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    start = loop.time()
    give_up = start + (math.inf if connect_timeout is None else connect_timeout)
    delay = _FIRST_RETRY
    try:
        with socket_name(address) as name:
            while True:
                try:
                    sock.connect(name)
                    break
                except BlockingIOError as exc:
                    now = loop.time()
                    if now >= give_up:
                        raise connect_error(address, exc, now - start) from None
                    await asyncio.sleep(min(delay, give_up - now))
                    delay = min(delay * 2, _LAST_RETRY)
    except OSError as exc:
        sock.close()
        raise connect_error(address, exc) from None
    except BaseException:
        sock.close()
        raise
    return sock
