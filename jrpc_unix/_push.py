"""What a connection pushes besides answers: subscription events and progress reports.

Each subscription gets a pump task in the connection's nursery (and, for a produced topic, a
producer task) that moves events from its bounded queue to the connection's output only while
the output is below half its limit: a slow reader makes events wait, and drop, in the queue
(see :mod:`jrpc_unix._pubsub`), never the service. Progress reports travel on the caller's
``progress`` subscription and are flushed ahead of each answer, so they always precede it.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio

from ._codec import dumps
from ._pubsub import PROGRESS_TOPIC, Subscription, Topic

if TYPE_CHECKING:
    from ._connection import Connection

__all__ = ["Push"]

log = logging.getLogger("jrpc_unix.server")


class Push:
    """The subscriptions of one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._stats = conn.server.stats
        self.subscriptions: dict[str, Subscription] = {}
        self._progress: Subscription | None = None

    def subscribe(self, topic: Topic, events: AsyncIterator[Any] | None, queue_size: int) -> Subscription:
        """Start delivering ``topic``'s events (for a produced topic: ``events``) here."""
        sub = Subscription(topic.name, queue_size, self._conn.server.limits.max_pending_output)
        topic.subscribers.add(sub)
        self.subscriptions[sub.id] = sub
        self._stats.subscriptions += 1
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
        if self._progress is sub:
            self._progress = None
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

    async def _pump(self, sub: Subscription, events: AsyncIterator[Any] | None) -> None:
        conn = self._conn
        limit = conn.server.limits.max_pending_output // 2
        with sub.scope:
            async with trio.open_nursery() as nursery:
                if events is not None:
                    nursery.start_soon(self._produce, sub, events)
                while True:
                    while not sub.queue and not sub.dropped:
                        await sub.lot.park()
                    await conn.writer.wait_below(limit)  # slow reader: events wait, and drop, here
                    self._drain(sub)
                    assert conn._nursery is not None  # the connection's, which unsubscribe spares
                    conn.writer.flush_soon(conn._nursery)  # not flush(): a cancel must not cut a write

    async def _produce(self, sub: Subscription, events: AsyncIterator[Any]) -> None:
        try:
            async for item in events:
                self._stats.events_dropped += sub.push(dumps(item))
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("producer of topic %r failed (error id %s); ending %s", sub.topic, error_id, sub.id)
            # Tell the subscriber, who would otherwise wait for events forever.
            params = {"subscription": sub.id, "topic": sub.topic, "error_id": error_id}
            self._drain(sub)  # the events it did produce come first
            self._conn.deliver(b'{"jsonrpc":"2.0","method":"rpc.ended","params":' + dumps(params) + b"}")
            assert self._conn._nursery is not None
            self._conn.writer.flush_soon(self._conn._nursery)
            self.unsubscribe(sub.id)

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
        self._stats.events_dropped += sub.push(dumps(event))
