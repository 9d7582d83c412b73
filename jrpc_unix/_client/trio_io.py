"""The trio client's connection machinery: one reader task, one writer task, waiting callers.

:class:`ClientConnection` owns the stream and the :class:`~._conversation.Conversation`. The
reader feeds it what arrives and wakes whoever it concerns (callers, progress callbacks,
subscription readers); the single writer sends queued messages whole, in order, so writes
never interleave and a cancelled caller never leaves half a request on the wire.

A caller that gives up (cancelled) stops the server's work too: a request still queued is
withdrawn (never sent); one already written is followed by an ``rpc.cancel`` notification,
queued without waiting, so cancellation is never delayed. Its late answer is dropped.
:class:`~._client.AsyncClient` adds the public API on top.
"""

from __future__ import annotations

import collections
import contextlib
import math

import trio

from .._errors import ConnectionClosedError, JrpcUnixError, ProtocolError
from .._wire.conversation import DEFAULT_MAX_ANSWER, Conversation, Exchange
from .._wire.feeds import CLOSED, Feed
from .._wire.requests import Notification
from .blocking_io import MAX_KEPT_NOTIFICATIONS, Progress

__all__ = ["CLIENT_CLOSED", "ClientConnection"]

CLIENT_CLOSED = "the client was closed"
_QUEUED, _WRITING, _SENT, _WITHDRAWN = range(4)


class _Outgoing:
    """One message for the writer, and whether it went out."""

    __slots__ = ("data", "settled", "state")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.state = _QUEUED
        self.settled = trio.Event()  # written, or never will be


class ClientConnection:
    """One connection's reader, writer and waiting callers (see the module docstring)."""

    def __init__(
        self, path: str, stream: trio.SocketStream, max_message_size: int = DEFAULT_MAX_ANSWER
    ) -> None:
        self.path = path
        self._stream = stream
        self._conv = Conversation(max_message_size)
        self._waiters: dict[Exchange, trio.Event] = {}
        self._feed_waiters: dict[Feed, trio.Event] = {}
        self._send_queue, self._queued = trio.open_memory_channel[_Outgoing](math.inf)
        self._closed: str | ProtocolError | None = None  # why the connection is over
        self._write_failed: str | None = None  # why nothing more can be sent
        self._inbox: collections.deque[Notification] = collections.deque(maxlen=MAX_KEPT_NOTIFICATIONS)
        self._arrived = trio.Event()
        self._progress_lock = trio.Lock()

    def _wake_feed(self, feed: Feed) -> None:
        waiter = self._feed_waiters.pop(feed, None)
        if waiter is not None:
            waiter.set()

    # -- sending and waiting ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed_error()
        if self._write_failed is not None:
            raise ConnectionClosedError(f"{self.path}: {self._write_failed}")

    def _closed_error(self, label: str | None = None) -> JrpcUnixError:
        reason = self._closed
        if isinstance(reason, ProtocolError):
            return ProtocolError(str(reason))
        if label is None:
            if reason == CLIENT_CLOSED:
                return ConnectionClosedError(f"the client for {self.path} is closed")
            return ConnectionClosedError(f"{self.path}: {reason}")
        said = self._conv.unattributed
        suffix = f" (the server said: {said[-1]})" if said else ""
        return ConnectionClosedError(f"{self.path}: {reason} before answering {label}{suffix}")

    def _queue_nowait(self, data: bytes) -> None:
        with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
            self._send_queue.send_nowait(_Outgoing(data))

    async def _write(self, data: bytes) -> None:
        self._check_open()
        out = _Outgoing(data)
        self._send_queue.send_nowait(out)
        await out.settled.wait()
        if out.state != _SENT:
            self._check_open()
            raise ConnectionClosedError(f"{self.path}: the notification was not sent")

    async def _exchange(self, pair: tuple[Exchange, bytes], progress: Progress | None = None) -> Exchange:
        exchange, data = pair
        self._check_open()
        out = _Outgoing(data)
        wake = self._waiters[exchange] = trio.Event()
        reports = exchange.reports if progress is not None else None
        try:
            self._send_queue.send_nowait(out)
            while True:
                await wake.wait()
                wake = self._waiters[exchange] = trio.Event()
                while reports and progress is not None:  # handed on and forgotten: memory stays flat
                    report = reports.popleft()
                    progress(report.get("done"), report.get("total"), report.get("message"))
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
        self._conv.abandon(exchange, sent=sent)  # its late answer will be dropped
        if sent and self._closed is None and self._write_failed is None:
            unanswered = [rid for rid in exchange.ids if rid not in exchange.outcomes]
            self._queue_nowait(b"".join(self._conv.notify("rpc.cancel", {"id": rid}) for rid in unanswered))

    # -- the helper tasks ------------------------------------------------------------------

    async def _write_loop(self) -> None:
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

    async def _read_loop(self) -> None:
        conv = self._conv
        try:
            while True:
                data = await self._stream.receive_some(65536)
                for exchange in conv.receive_data(data) if data else conv.receive_eof():
                    self._waiters[exchange].set()  # completed exchanges are always awaited
                self._wake(conv.feeds.take_touched())
                if conv.outgoing:  # subscriptions whose subscriber gave up: end them
                    self._queue_nowait(b"".join(conv.outgoing))
                    conv.outgoing.clear()
                if conv.notifications:
                    self._inbox.extend(conv.take_notifications())
                    self._arrived.set()
                    self._arrived = trio.Event()
                if not data:
                    self._shut("the server closed the connection")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._shut(f"reading failed ({exc or 'connection lost'})")
        except ProtocolError as exc:
            self._shut(exc)

    def _wake(self, touched: set[object]) -> None:
        for obj in touched:
            if isinstance(obj, Feed):
                self._wake_feed(obj)
            elif isinstance(obj, Exchange) and (waiter := self._waiters.get(obj)) is not None:
                waiter.set()

    def _shut(self, reason: str | ProtocolError) -> None:
        """The connection is over: fail every waiting caller, reader and queued write."""
        if self._closed is None:
            self._closed = reason
        self._send_queue.close()
        for event in self._waiters.values():
            event.set()
        self._conv.feeds.end_all(CLOSED)
        self._wake(self._conv.feeds.take_touched())
        self._arrived.set()
        self._settle_queued()

    def _settle_queued(self) -> None:
        while True:
            try:
                self._queued.receive_nowait().settled.set()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
