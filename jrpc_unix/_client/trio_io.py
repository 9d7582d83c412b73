"""The trio client's transport: one reader task, one writer task, waiting callers.

:class:`TrioTransport` owns a stream and drives the :class:`~.._wire.conversation.Conversation`:
the reader feeds it what arrives and matches the events it returns, waking whoever they
concern (callers, subscription readers, notification waiters); the single writer sends queued
messages whole, in order, so writes never interleave and a cancelled caller never leaves half a
request on the wire. Any ``trio.abc.Stream`` will do; :func:`connect_unix` opens a UNIX socket.

A caller that gives up (cancelled) stops the server's work too: a request still queued is
withdrawn (never sent); one already written is followed by ``rpc.cancel``, queued without
waiting, so cancellation is never delayed. Its late answer is dropped.
"""

from __future__ import annotations

import contextlib
import math
import socket
from typing import Any

import trio

from .._address import socket_name
from .._errors import ConnectError, ConnectionClosedError, JrpcUnixError, ProtocolError
from .._wire.conversation import Conversation, Exchange, Notification
from .._wire.events import Answered, FeedChanged, MustSend, NotificationArrived, ReportsArrived
from .._wire.feeds import END, UNSUBSCRIBED, Feed
from .connect import connect_error

__all__ = ["CLIENT_CLOSED", "TrioTransport", "connect_unix"]

CLIENT_CLOSED = "the client was closed"
_QUEUED, _WRITING, _SENT, _WITHDRAWN = range(4)
#: While the accept queue is full, retry after 1 ms, doubling up to 50 ms between tries.
_FIRST_RETRY, _LAST_RETRY = 0.001, 0.05


class _Outgoing:
    """One message for the writer, and whether it went out."""

    __slots__ = ("data", "settled", "state")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.state = _QUEUED
        self.settled = trio.Event()  # written, or never will be


class TrioTransport:
    """One connection's reader, writer and waiting callers (an :class:`~.transport.AsyncTransport`).

    Run :meth:`read_loop` and :meth:`write_loop` in a nursery for as long as it is used, and
    :meth:`shut` it afterwards.
    """

    def __init__(self, address: str, stream: trio.abc.Stream, conversation: Conversation) -> None:
        self.address = address
        self.conversation = conversation
        self.progress_lock = trio.Lock()
        self._stream = stream
        self._waiters: dict[Exchange, trio.Event] = {}
        self._feed_waiters: dict[Feed, trio.Event] = {}
        self._send_queue, self._queued = trio.open_memory_channel[_Outgoing](math.inf)
        #: why the connection is over: words, or the error to raise again (a ProtocolError, or
        #: the ConnectError of a stream that failed before it carried anything, as ssh's does)
        self._closed: str | JrpcUnixError | None = None
        self._write_failed: str | None = None  # why nothing more can be sent
        self._arrived = trio.Event()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    # -- what callers wait for -------------------------------------------------------------

    async def exchange(self, pair: tuple[Exchange, bytes]) -> Exchange:
        exchange, data = pair
        self._check_open()
        out = _Outgoing(data)
        wake = self._waiters[exchange] = trio.Event()
        try:
            self._send_queue.send_nowait(out)
            while True:
                await wake.wait()
                wake = self._waiters[exchange] = trio.Event()
                exchange.hand_on_reports()
                if exchange.done or self._closed is not None:
                    break
        finally:
            del self._waiters[exchange]
            if not exchange.done:
                self._call_off(out, exchange)
        if not exchange.done:
            raise self._closed_error(exchange.label)
        return exchange

    def _call_off(self, out: _Outgoing, exchange: Exchange) -> None:
        """The caller gave up: withdraw the request if unsent, else ask the server to cancel it.

        Never waits: this runs while a cancellation unwinds the caller."""
        sent = out.state != _QUEUED
        if not sent:
            out.state = _WITHDRAWN
        cancel = self.conversation.abandon(exchange, sent=sent)  # its late answer will be dropped
        if cancel:
            self.send_soon(cancel)

    async def send(self, data: bytes) -> None:
        self._check_open()
        out = _Outgoing(data)
        self._send_queue.send_nowait(out)
        await out.settled.wait()
        if out.state != _SENT:
            self._check_open()
            raise ConnectionClosedError(f"{self.address}: the notification was not sent")

    def send_soon(self, data: bytes) -> None:
        if self._closed is None and self._write_failed is None:
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                self._send_queue.send_nowait(_Outgoing(data))

    async def next_event(self, feed: Feed) -> Any:
        while not feed.events:
            if feed.ended == UNSUBSCRIBED:
                return END
            if feed.ended is not None:
                raise self._closed_error()
            waiter = self._feed_waiters.get(feed)
            if waiter is None:
                waiter = self._feed_waiters[feed] = trio.Event()
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
        reason = self._closed
        if isinstance(reason, JrpcUnixError):
            return type(reason)(str(reason))
        if label is not None:
            return self.conversation.closed_error(f"{self.address}: {reason} before answering {label}")
        if reason == CLIENT_CLOSED:
            return ConnectionClosedError(f"the client for {self.address} is closed")
        return ConnectionClosedError(f"{self.address}: {reason}")

    # -- the helper tasks ------------------------------------------------------------------

    async def write_loop(self) -> None:
        batch: list[_Outgoing] = []
        try:
            async for out in self._queued:
                batch = [out]
                while True:
                    try:
                        batch.append(self._queued.receive_nowait())
                    except trio.WouldBlock:
                        break
                batch = [o for o in batch if o.state == _QUEUED]  # withdrawn ones are skipped
                for o in batch:
                    o.state = _WRITING
                if batch:
                    await self._stream.send_all(b"".join(o.data for o in batch))
                for o in batch:
                    o.state = _SENT
                    o.settled.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # Callers keep waiting: the reader still delivers what the server said before it
            # closed (an overloaded server's refusal), then ends them at EOF.
            self._write_failed = f"writing failed ({exc or 'connection lost'})"
            self._send_queue.close()
            self._settle_queued()
        finally:
            for o in batch:
                o.settled.set()

    async def read_loop(self) -> None:
        conv = self.conversation
        try:
            while True:
                data = bytes(await self._stream.receive_some(65536))  # the same object if bytes
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
                    self._arrived = trio.Event()
                if not data:
                    self.shut("the server closed the connection")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.shut(f"reading failed ({exc or 'connection lost'})")
        except (ProtocolError, ConnectError) as exc:
            self.shut(exc)

    def shut(self, reason: str | JrpcUnixError) -> None:
        """The connection is over: fail every waiting caller, reader and queued write."""
        if self._closed is None:
            self._closed = reason
        self._send_queue.close()
        for event in self._waiters.values():
            event.set()
        for ended in self.conversation.connection_lost():
            self.feed_changed(ended.feed)
        self._arrived.set()
        self._settle_queued()

    def _settle_queued(self) -> None:
        while True:
            try:
                self._queued.receive_nowait().settled.set()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break


async def connect_unix(address: str, connect_timeout: float | None) -> trio.SocketStream:
    """Connect to ``address``, retrying while its accept queue is full (EAGAIN), up to ``connect_timeout``.

    A UNIX connect never completes later (no EINPROGRESS): it succeeds or fails at once, and a
    full queue only says to try again; nothing signals when there is room, hence the retries.
    """
    await trio.lowlevel.checkpoint()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    start = trio.current_time()
    give_up = start + (math.inf if connect_timeout is None else connect_timeout)
    delay = _FIRST_RETRY
    try:
        with socket_name(address) as name:
            while True:
                try:
                    sock.connect(name)
                    break
                except BlockingIOError as exc:
                    now = trio.current_time()
                    if now >= give_up:
                        raise connect_error(address, exc, now - start) from None
                    await trio.sleep(min(delay, give_up - now))
                    delay = min(delay * 2, _LAST_RETRY)
    except OSError as exc:
        sock.close()
        raise connect_error(address, exc) from None
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))
