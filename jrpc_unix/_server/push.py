"""What a connection pushes besides answers: subscription events and progress reports.

Each subscription gets one pump task in the connection's nursery. For a pushed topic it moves
events from the subscription's bounded queue to the connection's output; for a produced topic
it asks the producer for the next event and writes it. Either way it goes on only while the
output is below half its limit: a slow reader makes pushed events wait, and drop, in the queue
(see :mod:`jrpc_unix._server.pubsub`), and produced ones simply not be made, never slowing the service.
Progress reports travel on the caller's ``progress`` subscription and are flushed ahead of each
answer, so they always precede it.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio

from .._wire.fastjson import dumps
from .pubsub import PROGRESS_TOPIC, Budget, Encoded, Subscription, Topic, event_bytes

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Push"]

log = logging.getLogger("jrpc_unix.server")


class Push:
    """The subscriptions of one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stats = conn.server.stats
        self._per_uid = conn.server.subscriptions_per_uid
        self._uid = conn.peer.uid if conn.peer is not None else -1
        self._limit = conn.server.limits.max_pending_output // 2  # the pumps' output bound
        self._budget = Budget(conn.server.limits.max_pending_output)  # what the queues hold
        self.subscriptions: dict[str, Subscription] = {}
        self._progress: Subscription | None = None
        self._flush_planned = False

    def subscribe(self, topic: Topic, events: AsyncIterator[Any] | None, queue_size: int) -> Subscription:
        """Start delivering ``topic``'s events (for a produced topic: ``events``) here."""
        sub = Subscription(topic.name, queue_size, self._budget)
        self.subscriptions[sub.id] = sub
        self._stats.subscriptions += 1
        self._per_uid[self._uid] += 1
        if events is None:  # a produced topic's events never pass through its queue
            topic.subscribers.add(sub)
        if topic.name == PROGRESS_TOPIC:
            self._progress = sub
        nursery = self._conn._nursery
        assert nursery is not None
        nursery.start_soon(self._pump, sub, events)
        return sub

    def unsubscribe(self, sub_id: str) -> bool:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        self._conn.server.topics[sub.topic].subscribers.discard(sub)
        self._stats.subscriptions -= 1
        self._per_uid[self._uid] -= 1
        if not self._per_uid[self._uid]:
            del self._per_uid[self._uid]
        if self._progress is sub:
            self._progress = None
        sub.clear()
        sub.scope.cancel()
        return True

    def close(self) -> None:
        """End every subscription (disconnect, server stop)."""
        for sub_id in list(self.subscriptions):
            self.unsubscribe(sub_id)

    def end_progress(self) -> None:
        """End the ``progress`` subscription, if any (no call will report on it any more)."""
        if self._progress is not None:
            self.unsubscribe(self._progress.id)

    def before_answer(self) -> None:
        """Queue pending progress reports ahead of the answer about to be queued."""
        if self._progress is not None:
            self._drain(self._progress)

    def _drain(self, sub: Subscription) -> None:
        for line in sub.take():
            self._conn.deliver(line)

    def _flush_soon(self) -> None:
        """Have one task of the connection's nursery write what the pumps delivered (not the
        pump itself: unsubscribing cancels it, and a cut write loses the lines behind it)."""
        # One task for the many pumps of a tick, not one each; none while a write runs (it
        # goes on until no line is left).
        if not self._flush_planned and not self._conn.writer.writing:
            self._flush_planned = True
            assert self._conn._nursery is not None
            self._conn._nursery.start_soon(self._flush)

    async def _flush(self) -> None:
        self._flush_planned = False
        await self._conn.writer.flush()

    async def _pump(self, sub: Subscription, events: AsyncIterator[Any] | None) -> None:
        with sub.scope:
            if events is None:
                await self._pump_queue(sub)
            else:
                await self._pull(sub, events)

    async def _pump_queue(self, sub: Subscription) -> None:
        writer = self._conn.writer
        while True:
            while not sub.queue and not sub.dropped:
                await sub.lot.park()
            await writer.wait_below(self._limit)  # slow reader: events wait, and drop, here
            self._drain(sub)
            self._flush_soon()

    async def _pull(self, sub: Subscription, events: AsyncIterator[Any]) -> None:
        """Ask the producer for an event only when the output can take it, so a subscriber
        that does not read costs nothing: no event is made, none is queued or dropped."""
        writer = self._conn.writer
        try:
            while True:
                await writer.wait_below(self._limit)
                try:
                    item = await events.__anext__()
                except StopAsyncIteration:
                    break
                self._conn.deliver(sub.line(item if type(item) is Encoded else dumps(item)))
                self._flush_soon()
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("producer of topic %r failed (error id %s); ending %s", sub.topic, error_id, sub.id)
            # Tell the subscriber, who would otherwise wait for events forever.
            params = {"subscription": sub.id, "topic": sub.topic, "error_id": error_id}
            self._conn.deliver(b'{"jsonrpc":"2.0","method":"rpc.ended","params":' + dumps(params) + b"}")
            self._flush_soon()
            self.unsubscribe(sub.id)
            return
        await trio.sleep_forever()  # a producer that ran out: the subscription stays until ended

    def report_progress(self, request_id: Any, done: float, total: float | None, message: str | None) -> None:
        """Queue a progress event for the caller's ``progress`` subscription (any thread)."""
        conn = self._conn
        if threading.get_ident() != conn._thread:
            trio.from_thread.run_sync(
                self.report_progress, request_id, done, total, message, trio_token=conn._token
            )
            return
        sub = self._progress
        if sub is None:
            return
        event: dict[str, Any] = {"id": request_id, "done": done}
        if total is not None:
            event["total"] = total
        if message is not None:
            event["message"] = message
        self._stats.events_dropped += sub.push(event_bytes(event))
