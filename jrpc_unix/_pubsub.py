"""Server push: topics, subscriptions, and the slow-consumer policy.

A client calls ``rpc.subscribe`` with a topic and gets a subscription id; events then arrive on
the same connection as notifications until ``rpc.unsubscribe`` or disconnect::

    {"jsonrpc":"2.0","method":"rpc.event","params":{"subscription":"s1","topic":"stats","data":…}}

Each subscription has a bounded queue (``queue_size`` events, default 100, and at most
``max_pending_output`` bytes, however large the events). Publishing never waits: a full queue
drops its oldest events, and before the next event delivered the subscriber gets one notice of
how many were lost::

    {"jsonrpc":"2.0","method":"rpc.dropped","params":{"subscription":"s1","topic":"stats","count":7}}

Events leave the queue only while the connection's unsent output is below its limit, so a slow
reader loses old events instead of growing the server, and never slows the service or other
clients. A topic is either pushed to (``Server.publish``) or produced per subscription: its
producer takes the subscription's params and returns an async iterator of events (an async
generator function will do; a plain function that checks its params first gets bad ones
refused with -32602 by ``rpc.subscribe`` itself, as the built-in ``stats`` topic does:
``{"topic":"stats","interval":1.0}``). The ``progress`` topic carries progress reports of the
subscriber's own calls (see ``RequestContext.progress``).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from ._codec import dumps

__all__ = ["PROGRESS_TOPIC", "Producer", "Subscription", "Topic"]

PROGRESS_TOPIC = "progress"
Producer = Callable[..., AsyncIterator[Any]]
_ids = itertools.count(1)


class Subscription:
    """One client's subscription: a bounded queue of encoded events and a pump task's scope."""

    __slots__ = ("_head", "_max_bytes", "_size", "bytes", "dropped", "id", "lot", "queue", "scope", "topic")

    def __init__(self, topic: str, queue_size: int, max_bytes: int) -> None:
        self.id = f"s{next(_ids)}"
        self.topic = topic
        self.queue: collections.deque[bytes] = collections.deque()
        self._size = queue_size
        self._max_bytes = max_bytes  # large events: bounded by bytes too, not only by count
        self.bytes = 0
        self.dropped = 0
        self.lot = trio.lowlevel.ParkingLot()
        self.scope = trio.CancelScope()
        self._head = (
            b'{"jsonrpc":"2.0","method":"rpc.event","params":{"subscription":'
            + dumps(self.id)
            + b',"topic":'
            + dumps(topic)
            + b',"data":'
        )

    def push(self, data: bytes) -> int:
        """Queue one encoded event; returns how many of the oldest it pushed out."""
        queue = self.queue
        queue.append(data)
        self.bytes += len(data)
        dropped = 0
        while len(queue) > self._size or (self.bytes > self._max_bytes and len(queue) > 1):
            self.bytes -= len(queue.popleft())
            dropped += 1
        self.dropped += dropped
        self.lot.unpark_all()
        return dropped

    def take(self) -> list[bytes]:
        """Every queued event as an answer line, preceded by a dropped notice if any."""
        lines: list[bytes] = []
        if self.dropped:
            params = {"subscription": self.id, "topic": self.topic, "count": self.dropped}
            lines.append(b'{"jsonrpc":"2.0","method":"rpc.dropped","params":' + dumps(params) + b"}")
            self.dropped = 0
        head = self._head
        lines.extend(head + data + b"}}" for data in self.queue)
        self.queue.clear()
        self.bytes = 0
        return lines


class Topic:
    """A named stream of events, and who is subscribed to it."""

    __slots__ = ("description", "name", "producer", "subscribers")

    def __init__(self, name: str, producer: Producer | None = None, description: str = "") -> None:
        self.name = name
        self.producer = producer
        self.description = description
        self.subscribers: set[Subscription] = set()

    def publish(self, data: Any) -> int:
        """Queue ``data`` for every subscriber (encoded once); returns how many were dropped."""
        if not self.subscribers:
            return 0
        encoded = dumps(data)
        return sum(sub.push(encoded) for sub in self.subscribers)
