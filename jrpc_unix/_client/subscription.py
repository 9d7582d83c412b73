"""A subscription on the blocking client: an iterator of one topic's events.

::

    with client.subscribe("stats", interval=0.5) as sub:   # rpc.subscribe
        for data in sub:                                   # each event's data, in order
            print(data, sub.dropped)
    # leaving the block calls rpc.unsubscribe

Each wait for the next event is bounded by the client's timeout (``RpcTimeoutError``, which
leaves the subscription and the connection alone), or by ``sub.events(timeout=...)``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._wire.feeds import END

if TYPE_CHECKING:
    from .._wire.feeds import Feed
    from .blocking import Client

__all__ = ["Subscription"]


class Subscription:
    """Events of one ``rpc.subscribe`` on a :class:`~jrpc_unix.Client`'s connection.

    Iteration yields each event's ``data`` and stops once the subscription is closed; it raises
    ConnectionClosedError if the connection ends (the server stopped, or a call on the same
    client timed out), because the server then ended the subscription, not the reader.
    """

    def __init__(self, client: Client, feed: Feed) -> None:
        self._client = client
        self._feed = feed

    @property
    def id(self) -> str:
        """The server's subscription id (``"s1"``...)."""
        return self._feed.id

    @property
    def topic(self) -> str:
        return self._feed.topic

    @property
    def dropped(self) -> int:
        """Events lost so far: the counts of the server's ``rpc.dropped`` notices (it drops
        the oldest when this reader falls behind), plus any past this client's 10,000 kept."""
        return self._feed.dropped

    @property
    def closed(self) -> bool:
        """True once no more events can come (closed here, or the connection ended)."""
        return self._feed.ended is not None

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Any:
        """The next event's data, waiting up to the client's timeout."""
        data = self._client.next_event(self._feed)
        if data is END:
            raise StopIteration
        return data

    def events(self, timeout: float | None) -> Iterator[Any]:
        """Each event's data, waiting up to ``timeout`` seconds for each (None: forever)."""
        while (data := self._client.next_event(self._feed, timeout)) is not END:
            yield data

    def close(self) -> None:
        """Unsubscribe (idempotent); events not yet read are discarded."""
        self._client.unsubscribe(self._feed)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._feed.ended or "live"
        return f"<Subscription {self.id} {self.topic!r} {state}, dropped {self.dropped}>"
