"""What an event-loop transport does besides I/O: waking whoever the conversation's events concern.

:class:`~.trio_io.TrioTransport` and :class:`~.aio_io.AsyncioTransport` differ in how they read,
write and wait; what they wait *for* is the same, and lives here, parametrized by the loop's
event type (``trio.Event``, ``asyncio.Event``: ``set()`` and ``await wait()``): callers waiting
for their exchange (handing on progress reports), subscription readers, notification waiters,
and why the connection ended. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .._errors import ConnectionClosedError, JrpcUnixError, RpcError
from .._wire.conversation import Conversation, Exchange, Notification
from .._wire.events import Answered, FeedChanged, MustSend, NotificationArrived, ReportsArrived
from .._wire.feeds import END, UNSUBSCRIBED, Feed

__all__ = ["CLIENT_CLOSED", "LoopEvent", "WaitingCallers"]

CLIENT_CLOSED = "the client was closed"


class LoopEvent(Protocol):
    def set(self) -> None: ...
    async def wait(self) -> Any: ...


class WaitingCallers:
    """The waiting side of one connection's transport; subclasses read, write and ``send_soon``."""

    def __init__(self, address: str, conversation: Conversation, new_event: Callable[[], LoopEvent]) -> None:
        self.address = address
        self.conversation = conversation
        self._new_event = new_event
        self._waiters: dict[Exchange, LoopEvent] = {}
        self._feed_waiters: dict[Feed, LoopEvent] = {}
        #: why the connection is over: words, or the error to raise again (a ProtocolError, or
        #: the ConnectError of a stream that failed before it carried anything, as ssh's does)
        self._closed: str | JrpcUnixError | None = None
        self._write_failed: str | None = None  # why nothing more can be sent
        self._arrived = new_event()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    def send_soon(self, data: bytes) -> None:
        raise NotImplementedError

    # -- callers ---------------------------------------------------------------------------

    def _expect(self, exchange: Exchange) -> LoopEvent:
        """Be ready to wake the caller of ``exchange`` (before its request can be answered)."""
        self._check_open()
        wake = self._waiters[exchange] = self._new_event()
        return wake

    async def _wait_answered(self, exchange: Exchange, wake: LoopEvent) -> None:
        """Until ``exchange`` is answered or the connection is over, handing on its reports."""
        while True:
            await wake.wait()
            wake = self._waiters[exchange] = self._new_event()
            exchange.hand_on_reports()
            if exchange.done or self._closed is not None:
                return

    def _given_up(self, exchange: Exchange, sent: bool) -> None:
        """The caller of ``exchange`` stopped waiting; if it gave up before the answer, ask the
        server to cancel what it sent (never waiting: this may run while a cancellation unwinds)."""
        del self._waiters[exchange]
        if not exchange.done:
            cancel = self.conversation.abandon(exchange, sent=sent)  # its late answer is dropped
            if cancel:
                self.send_soon(cancel)

    def _answered(self, exchange: Exchange) -> Exchange:
        if not exchange.done:
            raise self._closed_error(exchange.label)
        return exchange

    async def next_event(self, feed: Feed) -> Any:
        while not feed.events:
            if feed.ended == UNSUBSCRIBED:
                return END
            if feed.ended is not None:
                raise self._closed_error()
            waiter = self._feed_waiters.get(feed)
            if waiter is None:
                waiter = self._feed_waiters[feed] = self._new_event()
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
        if refused is not None:  # refused before anything was asked: say why, whenever asked
            return RpcError(refused.code, refused.message, refused.data)
        if isinstance(reason, JrpcUnixError):
            return type(reason)(str(reason))
        if label is not None:
            return self.conversation.closed_error(f"{self.address}: {reason} before answering {label}")
        if reason == CLIENT_CLOSED:
            return ConnectionClosedError(f"the client for {self.address} is closed")
        return ConnectionClosedError(f"{self.address}: {reason}")

    # -- the reader ------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        """Feed what was read (b"": EOF) and wake whoever it concerns; ProtocolError is fatal."""
        conv = self.conversation
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
            self._arrived = self._new_event()

    def _end(self, reason: str | JrpcUnixError) -> None:
        """The connection is over: wake every waiting caller, reader and notification waiter."""
        if self._closed is None:
            self._closed = reason
        for event in self._waiters.values():
            event.set()
        for ended in self.conversation.connection_lost():
            self.feed_changed(ended.feed)
        self._arrived.set()
