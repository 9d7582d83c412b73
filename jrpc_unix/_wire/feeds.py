"""What the server pushes to a client, sans-IO: subscriptions' events and progress reports.

After ``rpc.subscribe`` the server sends, on the same connection and interleaved with answers::

    {"jsonrpc":"2.0","method":"rpc.event","params":{"subscription":"s1","topic":…,"data":…}}
    {"jsonrpc":"2.0","method":"rpc.dropped","params":{"subscription":"s1","topic":…,"count":7}}

:class:`Feeds` routes each one to its subscription's :class:`Feed` as the line is read, so no
event can reach the wrong reader whatever order lines and answers arrive in. Reports on the
``progress`` topic (``data`` = ``{"id", "done", "total"?, "message"?}``) also go to the waiting
call with that id. The server delivers progress to the newest ``progress`` subscription of a
connection only, so that one is the source here too.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from .conversation import Exchange

__all__ = ["CLOSED", "END", "MAX_KEPT_EVENTS", "PROGRESS", "UNSUBSCRIBED", "Feed", "Feeds"]

#: Events kept per subscription until read; beyond it the oldest go (counted as dropped).
MAX_KEPT_EVENTS: Final = 10_000
PROGRESS: Final = "progress"
#: Why a feed ended: we unsubscribed, or the connection is gone.
UNSUBSCRIBED: Final = "unsubscribed"
CLOSED: Final = "closed"
#: What a driver's "next event" returns once the feed was ended by its reader.
END: Final[Any] = object()
_PUSHED = ("rpc.event", "rpc.dropped")
_GONE_KEPT = 1000  # ids of ended subscriptions whose late events are dropped quietly


class Feed:
    """One subscription: its events in arrival order and how many were lost, until it ends.

    ``dropped`` adds up the server's ``rpc.dropped`` counts (its slow-consumer policy) and the
    events this client let go past :data:`MAX_KEPT_EVENTS` unread. ``ended`` is None while
    events may still come, else :data:`UNSUBSCRIBED` or :data:`CLOSED`.
    """

    __slots__ = ("dropped", "ended", "events", "id", "topic", "visible")

    def __init__(self, sub_id: str, topic: str, visible: bool = True) -> None:
        self.id = sub_id
        self.topic = topic
        self.visible = visible  # False: the client's own progress subscription, nobody reads it
        self.events: collections.deque[Any] = collections.deque()
        self.dropped = 0
        self.ended: str | None = None

    def add(self, data: Any) -> None:
        if len(self.events) >= MAX_KEPT_EVENTS:
            self.events.popleft()
            self.dropped += 1
        self.events.append(data)

    def __repr__(self) -> str:
        return f"<Feed {self.id} {self.topic!r} {self.ended or 'live'}, {len(self.events)} unread>"


class Feeds:
    """The subscriptions of one connection, and where each pushed notification goes."""

    def __init__(self) -> None:
        self.by_id: dict[str, Feed] = {}
        #: The subscription the server sends this connection's progress reports to.
        self.progress: Feed | None = None
        #: Feeds and exchanges that got something since the driver last looked (to wake readers).
        self.touched: set[object] = set()
        #: Events for subscriptions that had already ended (in flight when we unsubscribed).
        self.stray = 0
        self._gone: collections.deque[str] = collections.deque(maxlen=_GONE_KEPT)

    def open(self, sub_id: str, topic: str, visible: bool = True) -> Feed:
        feed = self.by_id[sub_id] = Feed(sub_id, topic, visible)
        if topic == PROGRESS:
            self.progress = feed
        return feed

    def end(self, feed: Feed, reason: str) -> None:
        """No more events for ``feed``: late ones are dropped, its readers wake up. Its reader
        ending it discards what it has not read; a lost connection keeps it to be read."""
        if feed.ended is None:
            feed.ended = reason
            self.touched.add(feed)
            if reason == UNSUBSCRIBED:
                feed.events.clear()
        if self.by_id.get(feed.id) is feed:
            del self.by_id[feed.id]
            self._gone.append(feed.id)
        if self.progress is feed:
            self.progress = None

    def end_all(self, reason: str) -> None:
        for feed in list(self.by_id.values()):
            self.end(feed, reason)

    def forget(self, sub_id: str) -> None:
        """A subscription we never opened a feed for (its caller gave up): drop its events."""
        self._gone.append(sub_id)

    def route(self, method: str, params: Any, waiting: Callable[[Any], Exchange | None]) -> bool:
        """Deliver a pushed notification; False if it is not one (it goes to the general inbox)."""
        if method not in _PUSHED or type(params) is not dict:
            return False
        sub_id = params.get("subscription")
        feed = self.by_id.get(sub_id) if type(sub_id) is str else None
        if feed is None:
            if sub_id in self._gone:
                self.stray += 1
                return True
            return False
        if method == "rpc.dropped":
            count = params.get("count")
            if type(count) is int and count > 0:
                feed.dropped += count
                self.touched.add(feed)
            return True
        data = params.get("data")
        if feed is self.progress and type(data) is dict:
            call = waiting(data.get("id"))
            if call is not None and call.reports is not None:
                call.reports.append(data)
                self.touched.add(call)
        if feed.visible:
            feed.add(data)
            self.touched.add(feed)
        return True

    def take_touched(self) -> set[object]:
        touched, self.touched = self.touched, set()
        return touched
