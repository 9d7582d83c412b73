"""The trio client: many tasks calling at once over one connection, answers matched by id.

``async with open_client(path) as client`` connects and runs two helper tasks for the block (a
reader and a writer: :mod:`._client_io`). Many tasks may call at once; a call's progress
reports go to its ``progress`` callback; subscriptions are async iterators. A cancelled caller
stops the server's work too (``rpc.cancel``), and its late answer is dropped
(``client.dropped``).

As trio asks, no method takes a ``timeout``: wrap calls in ``trio.fail_after``/``move_on_after``.
The one exception is ``connect_timeout``: how long :func:`open_client` keeps trying while the
server's accept queue is full, so a stuck server is a ConnectError, never an endless wait.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._errors import ConnectionClosedError, ProtocolError, RpcError
from .._response import Response
from .._wire.conversation import DEFAULT_MAX_ANSWER, Call
from .._wire.feeds import END, PROGRESS, UNSUBSCRIBED, Feed
from .._wire.requests import Notification, make_params, response_from, seed_params
from .blocking_io import Progress
from .connect import connect_address, connect_error
from .trio_io import CLIENT_CLOSED, ClientConnection
from .trio_subscription import AsyncSubscription

__all__ = ["AsyncClient", "AsyncSubscription", "open_client"]

#: While the accept queue is full, retry after 1 ms, doubling up to 50 ms between tries.
_FIRST_RETRY, _LAST_RETRY = 0.001, 0.05


class AsyncClient(ClientConnection):
    """One connection to a server; get one from :func:`open_client`. Safe for many tasks."""

    # -- public API ------------------------------------------------------------------------

    async def call(self, method: str, /, *args: Any, progress: Progress | None = None, **kwargs: Any) -> Any:
        """Call ``method`` and return its result; raises RpcError if the server answers an error.

        ``progress(done, total, message)`` is called for each progress report of this call, in
        order, before ``call`` returns (the connection subscribes to ``progress`` once, first).
        """
        params = make_params(args, kwargs)
        if progress is not None:
            await self._subscribe_progress()
        pair = self._conv.call(method, params, progress=progress is not None)
        return (await self._exchange(pair, progress)).result()

    async def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification; returns once it is written (no answer ever comes)."""
        await self._write(self._conv.notify(method, make_params(args, kwargs)))

    async def batch(self, *items: Call) -> list[Any]:
        """Send calls and notifications as one message; results in call order.

        A failed call's place holds its RpcError (not raised); notifications have no place.
        """
        exchange, data = self._conv.batch(items)
        if exchange is None:
            await self._write(data)
            return []
        return (await self._exchange((exchange, data))).results()

    async def send(self, cmd: str, args: Any = None, respond: bool = True) -> Response | None:
        """The Go original's ``Send``: a Response for a call, None for ``respond=False``."""
        params = seed_params(args)
        if not respond:
            await self._write(self._conv.notify(cmd, params))
            return None
        exchange = await self._exchange(self._conv.call(cmd, params))
        return response_from(exchange.outcomes[exchange.ids[0]])

    def subscribe(self, topic: str, /, **params: Any) -> AsyncSubscription:
        """``async with client.subscribe(topic, **params) as sub: async for data in sub: ...``

        Entering calls ``rpc.subscribe`` (params: the topic's own, and ``queue_size``); leaving
        sends ``rpc.unsubscribe`` as a notification, queued without waiting when the block is
        left by an exception or a cancellation.
        """
        return AsyncSubscription(self, topic, params)

    async def wait_notification(self) -> Notification:
        """The next notification the server sent that no :meth:`subscribe` claimed.

        Kept (the newest 10,000) until taken; raises ConnectionClosedError once the connection
        is over and none are left. Bound the wait with ``trio.fail_after`` if need be.
        """
        while not self._inbox:
            self._check_open()
            await self._arrived.wait()
        return self._inbox.popleft()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def dropped(self) -> int:
        """How many answers arrived for calls nobody waited for any more (late answers)."""
        return self._conv.dropped

    # -- subscriptions (for AsyncSubscription) ---------------------------------------------

    async def open_feed(self, topic: str, params: dict[str, Any]) -> Feed:
        exchange = await self._exchange(self._conv.subscribe(topic, params))
        result = exchange.result()
        if exchange.feed is None:
            raise ProtocolError(f"rpc.subscribe answered without a subscription id: {result!r:.200}")
        return exchange.feed

    async def next_event(self, feed: Feed) -> Any:
        """The next event of ``feed``; END once unsubscribed; ConnectionClosedError once the
        connection is over."""
        while not feed.events:
            if feed.ended == UNSUBSCRIBED:
                return END
            if feed.ended is not None:
                raise self._closed_error()
            waiter = self._feed_waiters.get(feed)
            if waiter is None:
                waiter = self._feed_waiters[feed] = trio.Event()
            await waiter.wait()
        return feed.events.popleft()

    async def close_feed(self, feed: Feed, wait: bool = True) -> None:
        """Unsubscribe (idempotent): ``rpc.unsubscribe`` as a notification, awaited until written,
        or with ``wait=False`` queued without waiting (cleanup during a cancellation)."""
        if feed.ended is not None:
            return
        data = self._conv.unsubscribe(feed)
        self._wake_feed(feed)
        if self._closed is not None or self._write_failed is not None:
            return
        if not wait:
            self._queue_nowait(data)
            return
        with contextlib.suppress(ConnectionClosedError):  # the subscription ended with it
            await self._write(data)

    async def _subscribe_progress(self) -> None:
        """Subscribe the connection to ``progress`` once, however many tasks ask at once."""
        async with self._progress_lock:
            if not self._conv.progress_subscribed:
                exchange = await self._exchange(self._conv.subscribe(PROGRESS, visible=False))
                with contextlib.suppress(RpcError):  # a server without progress: no reports
                    exchange.result()


async def _connect(path: str, connect_timeout: float | None) -> trio.SocketStream:
    """Connect to ``path``, retrying while its accept queue is full (EAGAIN), up to ``connect_timeout``.

    A UNIX connect never completes later (no EINPROGRESS): it succeeds or fails at once, and a
    full queue only says to try again; nothing signals when there is room, hence the retries.
    """
    await trio.lowlevel.checkpoint()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    start = trio.current_time()
    give_up = start + (math.inf if connect_timeout is None else connect_timeout)
    delay = _FIRST_RETRY
    try:
        with connect_address(path) as addr:
            while True:
                try:
                    sock.connect(addr)
                    break
                except BlockingIOError as exc:
                    now = trio.current_time()
                    if now >= give_up:
                        raise connect_error(path, exc, now - start) from None
                    await trio.sleep(min(delay, give_up - now))
                    delay = min(delay * 2, _LAST_RETRY)
    except OSError as exc:
        sock.close()
        raise connect_error(path, exc) from None
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(trio.socket.from_stdlib_socket(sock))


@asynccontextmanager
async def open_client(
    path: str | os.PathLike[str],
    *,
    connect_timeout: float | None = 30.0,
    max_message_size: int = DEFAULT_MAX_ANSWER,
) -> AsyncIterator[AsyncClient]:
    """Connect to the server at ``path``; the connection closes when the block ends.

    While the server's accept queue is full, connecting is retried for up to ``connect_timeout``
    seconds (None: until cancelled), then raises ConnectError.
    """
    text = os.fspath(path)
    stream = await _connect(text, connect_timeout)
    client = AsyncClient(text, stream, max_message_size)
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._read_loop)
            nursery.start_soon(client._write_loop)
            try:
                yield client
            except BaseException as exc:  # re-raised below, unwrapped by the nursery
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
    finally:
        client._shut(CLIENT_CLOSED)
        with trio.CancelScope(shield=True):
            await stream.aclose()
    if failure is not None:
        try:
            raise failure
        finally:
            failure = None
