"""A subscription on the trio client: an async context manager and async iterator of events.

::

    async with client.subscribe("stats", interval=0.5) as sub:    # rpc.subscribe
        async for data in sub:                                    # each event's data, in order
            print(data, sub.dropped)
    # leaving the block unsubscribes

No method takes a timeout (trio's rule): bound waits with ``trio.fail_after``. Leaving the block
sends ``rpc.unsubscribe`` as a notification (awaited until written; a later call on the client
sees it done); leaving it by an exception or a cancellation only queues it, so cleanup never
delays the cancellation.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._wire.feeds import END

if TYPE_CHECKING:
    from .._wire.feeds import Feed
    from .trio_client import AsyncClient

__all__ = ["AsyncSubscription"]


class AsyncSubscription:
    """Events of one ``rpc.subscribe`` on an :class:`~jrpc_unix.AsyncClient`'s connection.

    Iteration yields each event's ``data`` and stops once the subscription is closed; it raises
    ConnectionClosedError when the connection ends, since the server then ended it, not you.
    """

    def __init__(self, client: AsyncClient, topic: str, params: dict[str, Any]) -> None:
        self._client = client
        self._topic = topic
        self._params = params
        self._feed: Feed | None = None

    @property
    def _live(self) -> Feed:
        if self._feed is None:
            raise RuntimeError("use the subscription inside `async with client.subscribe(...)`")
        return self._feed

    @property
    def id(self) -> str:
        """The server's subscription id (``"s1"``...)."""
        return self._live.id

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def dropped(self) -> int:
        """Events lost so far: the counts of the server's ``rpc.dropped`` notices (it drops
        the oldest when this reader falls behind), plus any past the client's 10,000 kept."""
        return self._live.dropped

    @property
    def closed(self) -> bool:
        """True once no more events can come (closed here, or the connection ended)."""
        return self._feed is not None and self._feed.ended is not None

    async def __aenter__(self) -> AsyncSubscription:
        if self._feed is not None:
            raise RuntimeError("a subscription is entered once")
        self._feed = await self._client.open_feed(self._topic, self._params)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._feed is not None:
            await self._client.close_feed(self._feed, wait=exc_type is None)

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Any:
        data = await self._client.next_event(self._live)
        if data is END:
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        """Unsubscribe now (idempotent); events not yet read are discarded."""
        await self._client.close_feed(self._live)

    def __repr__(self) -> str:
        feed = self._feed
        state = "not entered" if feed is None else f"{feed.id} {feed.ended or 'live'}"
        return f"<AsyncSubscription {self._topic!r} {state}>"
