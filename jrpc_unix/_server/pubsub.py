"""Server push: topics, subscriptions, and the slow-consumer policy.

A client calls ``rpc.subscribe`` with a topic and gets a subscription id; events then arrive on
the same connection as notifications until ``rpc.unsubscribe`` or disconnect::

    {"jsonrpc":"2.0","method":"rpc.event","params":{"subscription":"s1","topic":"stats","data":…}}

A published topic's events also carry ``"epoch"`` (the server's, new at each start) and
``"seq"`` (1, 2, ... per topic), and a subscription may resume after a seq (see :class:`Topic`).

A topic is either pushed to (``Server.publish``; the ``progress`` topic, which carries progress
reports of the subscriber's own calls) or produced per subscription: its producer takes the
subscription's params and returns an async iterator of events (an async generator function
will do; a plain function that checks its params first gets bad ones refused with -32602 by
``rpc.subscribe`` itself, as the built-in ``stats`` topic does: ``{"topic":"stats","interval":1}``).

A produced topic is *pulled*: its next event is asked for only when the connection can take it,
so a subscriber that does not read costs no work and holds no queue. A pushed topic's events
wait in the subscription's bounded queue (``queue_size`` events; all the queues of a connection
together at most ``max_pending_output`` bytes, counted at what the events really occupy).
Publishing never waits: a full queue drops its oldest events, and before the next event
delivered the subscriber gets one notice of how many were lost::

    {"jsonrpc":"2.0","method":"rpc.dropped","params":{"subscription":"s1","topic":"stats","count":7}}

Every topic has the :class:`~jrpc_unix.Access` level a caller needs to subscribe to it.
"""

from __future__ import annotations

import collections
import itertools
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from .._service.access import Access
from .._wire.fastjson import dumps

__all__ = ["PROGRESS_TOPIC", "Budget", "Encoded", "Producer", "SubscriberQueue", "Topic", "event_bytes"]

PROGRESS_TOPIC = "progress"
Producer = Callable[..., AsyncIterator[Any]]
_ids = itertools.count(1)
#: What a queued event costs besides its bytes: the bytes object's header and its queue slot.
_OVERHEAD = sys.getsizeof(b"") + 8


class Encoded(bytes):
    """An event already encoded as JSON, which a producer may yield to share one encoding
    among many subscribers (the built-in ``stats`` topic does)."""

    __slots__ = ()


def event_bytes(data: Any) -> bytes:
    """``data`` encoded for queueing, in a bytes object of its exact size.

    orjson's output over-allocates: each of its bytes objects kept alive costs at least 4 KiB
    of heap whatever its length (measured in specs/design-notes.md), so a queue of them would
    hold many times what it counts. A copy is cheap and occupies what it says.
    """
    return memoryview(dumps(data)).tobytes()


class Budget:
    """The bytes held by the queues of one connection's subscriptions, and their bound."""

    __slots__ = ("bytes", "limit")

    def __init__(self, limit: int) -> None:
        self.bytes = 0
        self.limit = limit


class SubscriberQueue:
    """One client's subscription, server side: a bounded queue of encoded events and its pump
    task's scope (the client's side is :class:`jrpc_unix.Subscription`)."""

    __slots__ = ("_budget", "_head", "_size", "bytes", "dropped", "id", "lot", "queue", "scope", "topic")

    def __init__(self, topic: str, queue_size: int, budget: Budget) -> None:
        self.id = f"s{next(_ids)}"
        self.topic = topic
        self.queue: collections.deque[bytes] = collections.deque()
        self._size = queue_size
        self._budget = budget  # shared by the connection's subscriptions
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
        """Queue one encoded event; returns how many of the oldest it pushed out.

        Over the connection's budget, this subscription drops its own oldest events (never its
        newest): a busy topic makes room at its own expense, not at its neighbours'.
        """
        queue, budget = self.queue, self._budget
        queue.append(data)
        cost = len(data) + _OVERHEAD
        self.bytes += cost
        budget.bytes += cost
        dropped = 0
        while len(queue) > self._size or (budget.bytes > budget.limit and len(queue) > 1):
            gone = len(queue.popleft()) + _OVERHEAD
            self.bytes -= gone
            budget.bytes -= gone
            dropped += 1
        self.dropped += dropped
        self.lot.unpark_all()
        return dropped

    def line(self, data: bytes) -> bytes:
        """The ``rpc.event`` notification carrying one encoded event."""
        return self._head + data + b"}}"

    def take(self) -> list[bytes]:
        """Every queued event as an answer line, preceded by a dropped notice if any."""
        lines: list[bytes] = []
        if self.dropped:
            params = {"subscription": self.id, "topic": self.topic, "count": self.dropped}
            lines.append(b'{"jsonrpc":"2.0","method":"rpc.dropped","params":' + dumps(params) + b"}")
            self.dropped = 0
        lines.extend(map(self.line, self.queue))
        self.clear()
        return lines

    def clear(self) -> None:
        """Empty the queue, giving its bytes back to the connection's budget."""
        self.queue.clear()
        self._budget.bytes -= self.bytes
        self.bytes = 0


class Topic:
    """A named stream of events, who may subscribe to it, and who is subscribed.

    A published topic numbers its events (``seq``, from 1, with the server's ``epoch``) and,
    from its first subscription on, keeps the last ``history`` of them, so a subscriber that
    reconnects can resume after the last seq it saw (``rpc.subscribe(topic, since=SEQ)``).
    """

    __slots__ = (
        "_tail",
        "access",
        "description",
        "epoch",
        "history",
        "kept",
        "name",
        "producer",
        "seq",
        "subscribers",
        "watched",
    )

    def __init__(
        self,
        name: str,
        producer: Producer | None = None,
        description: str = "",
        access: Access = Access.OPERATE,
        *,
        epoch: str = "",
        history: int = 0,
    ) -> None:
        self.name = name
        self.producer = producer
        self.description = description
        self.access = Access(access)
        self.subscribers: set[SubscriberQueue] = set()
        self.seq = 0
        self.history = history
        #: (seq, queued bytes) of the last ``history`` events; None until the first subscription.
        self.kept: collections.deque[tuple[int, bytes]] | None = None
        #: Whether an event published now goes anywhere: to a subscriber, or into the history
        #: (kept up to date by the three methods below: publishers read it on every event).
        self.watched = False
        self.epoch = epoch
        self._tail = b',"epoch":' + dumps(epoch) + b',"seq":'

    def keep_history(self) -> None:
        """Start keeping the last events (at the first subscription: until then, publishing to
        a topic nobody ever watched costs nothing)."""
        if self.kept is None and self.history and self.producer is None:
            self.kept = collections.deque(maxlen=self.history)
            self.watched = True

    def add_subscriber(self, sub: SubscriberQueue) -> None:
        self.subscribers.add(sub)
        self.watched = True

    def remove_subscriber(self, sub: SubscriberQueue) -> None:
        self.subscribers.discard(sub)
        self.watched = bool(self.subscribers) or self.kept is not None

    def publish(self, data: Any) -> int:
        """Queue ``data`` for every subscriber (encoded once); returns how many were dropped."""
        if not self.watched:
            return 0
        self.seq += 1
        entry = dumps(data) + self._tail + b"%d" % self.seq  # (a new bytes of its exact size)
        if self.kept is not None:
            self.kept.append((self.seq, entry))
        return sum(sub.push(entry) for sub in self.subscribers)

    def after(self, since: int) -> tuple[list[bytes], int, bool]:
        """The kept events after seq ``since``, the oldest seq kept (the next one if none is),
        and whether events after ``since`` were lost (older than what is kept)."""
        kept = self.kept or ()
        oldest = kept[0][0] if kept else self.seq + 1
        return [entry for seq, entry in kept if seq > since], oldest, since + 1 < oldest
