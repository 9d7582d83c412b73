"""A connection's outbox: what it pushes besides answers, subscription events and progress reports.

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
from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio

from .._wire.fastjson import dumps
from .loop import TaskNursery
from .pubsub import PROGRESS_TOPIC, Budget, Encoded, SubscriberQueue, event_bytes
from .shared import HostedEvents, ServeContext
from .writer import Writer

__all__ = ["Outbox"]

log = logging.getLogger("jrpc_unix.server")


class Outbox:
    """The subscriptions of one connection, whose events go out through its ``writer``."""

    __slots__ = (
        "_budget",
        "_deliver",
        "_flush_planned",
        "_limit",
        "_loop",
        "_per_uid",
        "_progress",
        "_shared",
        "_stats",
        "_tasks",
        "_topics",
        "_uid",
        "_writer",
        "subscriptions",
    )

    def __init__(self, shared: ServeContext, writer: Writer, tasks: TaskNursery, uid: int) -> None:
        self._writer = writer
        self._deliver = writer.deliver
        self._tasks = tasks
        self._loop = shared.loop
        self._topics = shared.topics
        self._shared = shared  # its own topics and how the service's async code is awaited
        self._stats = shared.stats
        self._per_uid = shared.subscriptions_per_uid
        self._uid = uid
        self._limit = shared.limits.max_pending_output // 2  # the pumps' output bound
        self._budget = Budget(shared.limits.max_pending_output)  # what the queues hold
        self.subscriptions: dict[str, SubscriberQueue] = {}
        self._progress: SubscriberQueue | None = None
        self._flush_planned = False

    @property
    def queued_bytes(self) -> int:
        """What the subscriptions' queues hold (``rpc.connections``)."""
        return self._budget.bytes

    def subscribe(
        self, topic: str, events: AsyncIterator[Any] | None, queue_size: int, backlog: Sequence[bytes] = ()
    ) -> SubscriberQueue:
        """Start delivering ``topic``'s events (for a produced topic: ``events``) here, after
        the ``backlog`` of kept events a resumed subscription replays."""
        sub = SubscriberQueue(topic, queue_size, self._budget)
        for entry in backlog:  # (sent after the subscribe answer: the pump starts later)
            self._stats.events_dropped += sub.push(entry)
        self.subscriptions[sub.id] = sub
        self._stats.subscriptions += 1
        self._per_uid[self._uid] += 1
        if events is None:  # a produced topic's events never pass through its queue
            self._topics[topic].add_subscriber(sub)
        elif topic not in self._shared.own_topics:  # the service's producer: on its host's loop
            events = HostedEvents(events, self._shared.await_handler)
        if topic == PROGRESS_TOPIC:
            self._progress = sub
        self._tasks.start_soon(self._pump, sub, events)
        return sub

    def unsubscribe(self, sub_id: str) -> bool:
        sub = self.subscriptions.pop(sub_id, None)
        if sub is None:
            return False
        self._topics[sub.topic].remove_subscriber(sub)
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

    def _drain(self, sub: SubscriberQueue) -> None:
        for line in sub.take():
            self._deliver(line)

    def _flush_soon(self) -> None:
        """Have one task of the connection's nursery write what the pumps delivered (not the
        pump itself: unsubscribing cancels it, and a cut write loses the lines behind it)."""
        # One task for the many pumps of a tick, not one each; none while a write runs (it
        # goes on until no line is left).
        if not self._flush_planned and not self._writer.writing:
            self._flush_planned = True
            self._tasks.start_soon(self._flush)

    async def _flush(self) -> None:
        self._flush_planned = False
        await self._writer.flush()

    async def _pump(self, sub: SubscriberQueue, events: AsyncIterator[Any] | None) -> None:
        with sub.scope:
            if events is None:
                await self._pump_queue(sub)
            else:
                await self._pull(sub, events)

    async def _pump_queue(self, sub: SubscriberQueue) -> None:
        writer = self._writer
        while True:
            while not sub.queue and not sub.dropped:
                await sub.lot.park()
            await writer.wait_below(self._limit)  # slow reader: events wait, and drop, here
            self._drain(sub)
            self._flush_soon()

    async def _pull(self, sub: SubscriberQueue, events: AsyncIterator[Any]) -> None:
        """Ask the producer for an event only when the output can take it, so a subscriber
        that does not read costs nothing: no event is made, none is queued or dropped."""
        writer = self._writer
        try:
            while True:
                await writer.wait_below(self._limit)
                try:
                    item = await events.__anext__()
                except StopAsyncIteration:
                    break
                self._deliver(sub.line(item if type(item) is Encoded else dumps(item)))
                self._flush_soon()
        except Exception:
            error_id = secrets.token_hex(4)
            log.exception("producer of topic %r failed (error id %s); ending %s", sub.topic, error_id, sub.id)
            # Tell the subscriber, who would otherwise wait for events forever.
            params = {"subscription": sub.id, "topic": sub.topic, "error_id": error_id}
            self._deliver(b'{"jsonrpc":"2.0","method":"rpc.ended","params":' + dumps(params) + b"}")
            self._flush_soon()
            self.unsubscribe(sub.id)
            return
        await trio.sleep_forever()  # a producer that ran out: the subscription stays until ended

    def report_progress(self, request_id: Any, done: float, total: float | None, message: str | None) -> None:
        """Queue a progress event for the caller's ``progress`` subscription (any thread)."""
        self._loop.call(self._report, request_id, done, total, message)

    def _report(self, request_id: Any, done: float, total: float | None, message: str | None) -> None:
        sub = self._progress
        if sub is None:
            return
        event: dict[str, Any] = {"id": request_id, "done": done}
        if total is not None:
            event["total"] = total
        if message is not None:
            event["message"] = message
        self._stats.events_dropped += sub.push(event_bytes(event))
