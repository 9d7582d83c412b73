"""What the server pushes to a client, sans-IO: the subscriptions of one connection.

After ``rpc.subscribe`` the server sends, on the same connection and interleaved with answers::

    {"jsonrpc":"2.0","method":"rpc.event","params":{"subscription":"s1","topic":…,"data":…}}
    {"jsonrpc":"2.0","method":"rpc.dropped","params":{"subscription":"s1","topic":…,"count":7}}

The conversation routes each one to its subscription's :class:`Feed` as the line is read, so no
event can reach the wrong reader whatever order lines and answers arrive in. Reports on the
``progress`` topic (``data`` = ``{"id", "done", "total"?, "message"?}``) go to the waiting call
with that id. The server delivers progress to the newest ``progress`` subscription of a
connection only, so that one is :attr:`Feeds.progress` here too.
"""

from __future__ import annotations

import collections

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = ["CLOSED", "END", "MAX_KEPT_EVENTS", "PROGRESS", "UNSUBSCRIBED", "Feed", "Feeds"]

#: Events kept per subscription until read; beyond it the oldest go (counted as dropped).
MAX_KEPT_EVENTS: Final = 10_000
PROGRESS: Final = "progress"
#: Why a feed ended: we unsubscribed, or the connection is gone.
UNSUBSCRIBED: Final = "unsubscribed"
CLOSED: Final = "closed"
#: What a driver's "next event" returns once the feed was ended by its reader.
END: Final[Any] = object()
_GONE_KEPT = 1000  # ids of ended subscriptions whose late events are dropped quietly


class Feed:
    """One subscription: its events in arrival order and how many were lost, until it ends.

    ``dropped`` adds up the server's ``rpc.dropped`` counts (its slow-consumer policy) and the
    events this client let go past :data:`MAX_KEPT_EVENTS` unread. ``ended`` is None while
    events may still come, else :data:`UNSUBSCRIBED` or :data:`CLOSED`.
    """

    __slots__ = ("dropped", "ended", "epoch", "events", "id", "keeps_events", "resumed", "seq", "topic")

    def __init__(self, sub_id: str, topic: str, keeps_events: bool = True) -> None:
        self.id = sub_id
        self.topic = topic
        self.keeps_events = keeps_events  # False: the client's own progress feed, nobody reads it
        self.events: collections.deque[Any] = collections.deque()
        self.dropped = 0
        self.ended: str | None = None
        #: The ``seq`` and ``epoch`` of the newest event received (published topics number
        #: their events), from which a new subscription can resume: ``since=seq, epoch=epoch``.
        self.seq: int | None = None
        self.epoch: str | None = None
        #: A resumed subscription's answer: ``truncated``, ``oldest``, ``restarted``, ...
        self.resumed: dict[str, Any] | None = None

    def add(self, data: Any) -> None:
        if len(self.events) >= MAX_KEPT_EVENTS:
            self.events.popleft()
            self.dropped += 1
        self.events.append(data)

    def __repr__(self) -> str:
        return f"<Feed {self.id} {self.topic!r} {self.ended or 'live'}, {len(self.events)} unread>"


class Feeds:
    """The subscriptions of one connection, live and lately ended."""

    def __init__(self) -> None:
        self.by_id: dict[str, Feed] = {}
        #: The subscription the server sends this connection's progress reports to.
        self.progress: Feed | None = None
        self._gone: collections.deque[str] = collections.deque(maxlen=_GONE_KEPT)

    def open(self, sub_id: str, topic: str, keeps_events: bool = True) -> Feed:
        feed = self.by_id[sub_id] = Feed(sub_id, topic, keeps_events)
        if topic == PROGRESS:
            self.progress = feed
        return feed

    def end(self, feed: Feed, reason: str) -> bool:
        """No more events for ``feed``: late ones are dropped. Its reader ending it discards what
        it has not read; a lost connection keeps it to be read. True if it ended just now."""
        ending = feed.ended is None
        if ending:
            feed.ended = reason
            if reason == UNSUBSCRIBED:
                feed.events.clear()
        if self.by_id.get(feed.id) is feed:
            del self.by_id[feed.id]
            self._gone.append(feed.id)
        if self.progress is feed:
            self.progress = None
        return ending

    def end_all(self, reason: str) -> list[Feed]:
        """End every live feed; the ones that ended just now."""
        return [feed for feed in list(self.by_id.values()) if self.end(feed, reason)]

    def forget(self, sub_id: str) -> None:
        """A subscription we never opened a feed for (its caller gave up): drop its events."""
        self._gone.append(sub_id)

    def ended_lately(self, sub_id: str) -> bool:
        """Whether ``sub_id`` is one of ours that ended (its late events are dropped quietly)."""
        return sub_id in self._gone
