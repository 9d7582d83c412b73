"""Server push: topics, subscriptions, and the slow-consumer policy.

A client calls ``rpc.subscribe`` with a topic and gets a subscription id; events then arrive on
the same connection as notifications until ``rpc.unsubscribe`` or disconnect::

    {"jsonrpc":"2.0","method":"rpc.event","params":{"subscription":"s1","topic":"stats","data":…}}

Each subscription has a bounded queue (``queue_size``, default 100). Publishing never waits: a
full queue drops its oldest event, and before the next event delivered the subscriber gets one
notice of how many were lost::

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

    __slots__ = ("_head", "dropped", "id", "lot", "queue", "scope", "topic")

    def __init__(self, topic: str, queue_size: int) -> None:
        self.id = f"s{next(_ids)}"
        self.topic = topic
        self.queue: collections.deque[bytes] = collections.deque(maxlen=queue_size)
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

    def push(self, data: bytes) -> bool:
        """Queue one encoded event; returns False if it pushed out the oldest one."""
        full = len(self.queue) == self.queue.maxlen
        if full:
            self.dropped += 1
        self.queue.append(data)
        self.lot.unpark_all()
        return not full

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
        return sum(not sub.push(encoded) for sub in self.subscribers)
