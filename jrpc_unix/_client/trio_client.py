"""The trio client and its subscriptions: many tasks calling at once over one connection.

``async with open_client(path) as client`` connects and runs the transport's reader and writer
tasks for the block (:mod:`.trio_io`). Many tasks may call at once; answers are matched by id; a
call's progress reports go to its ``progress`` callback; subscriptions are async iterators. A
cancelled caller stops the server's work too (``rpc.cancel``), and its late answer is dropped
(``client.dropped``).

As trio asks, no method takes a ``timeout``: wrap calls in ``trio.fail_after``/``move_on_after``.
The one exception is ``connect_timeout``: how long :func:`open_client` keeps trying while the
server's accept queue is full, so a stuck server is a ConnectError, never an endless wait.

:class:`AsyncClient` uses only its :class:`~.transport.AsyncTransport`'s methods, never trio's,
so it is the asyncio client's front too (:func:`jrpc_unix.aio.open_client`, over
:class:`~.aio_io.AsyncioTransport`; there ``asyncio.timeout`` bounds the waits).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import trio

from .._address import is_ssh
from .._errors import ConnectionClosedError
from .._wire.client_framing import ClientFraming
from .._wire.conversation import DEFAULT_MAX_ANSWER, Call, Conversation, Progress
from .._wire.feeds import END, Feed
from .._wire.requests import Notification, make_params, seed_params
from .trio_framed import FramedTrioStream
from .trio_io import CLIENT_CLOSED, TrioTransport, connect_unix

if TYPE_CHECKING:
    from .._response import Response
    from .transport import AsyncTransport

__all__ = ["AsyncClient", "AsyncSubscription", "client_over", "open_client"]


class AsyncClient:
    """One connection to a server; get one from :func:`open_client`. Safe for many tasks."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._transport = transport
        self._conv = transport.conversation

    async def call(self, method: str, /, *args: Any, progress: Progress | None = None, **kwargs: Any) -> Any:
        """Call ``method`` and return its result; raises RpcError if the server answers an error.

        ``progress(done, total, message)`` is called for each progress report of this call, in
        order, before ``call`` returns (the connection subscribes to ``progress`` once, first).
        """
        params = make_params(args, kwargs)
        if progress is not None:
            async with self._transport.progress_lock:  # once, however many tasks ask at once
                if not self._conv.progress_subscribed:
                    await self._transport.exchange(self._conv.subscribe_progress())
        return (await self._transport.exchange(self._conv.call(method, params, progress=progress))).result()

    async def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification; returns once it is written (no answer ever comes)."""
        await self._transport.send(self._conv.notify(method, make_params(args, kwargs)))

    async def batch(self, *items: Call) -> list[Any]:
        """Send calls and notifications as one message; results in call order.

        A failed call's place holds its RpcError (not raised); notifications have no place.
        """
        exchange, data = self._conv.batch(items)
        if exchange is None:
            await self._transport.send(data)
            return []
        return (await self._transport.exchange((exchange, data))).results()

    async def send(self, cmd: str, args: Any = None, respond: bool = True) -> Response | None:
        """The Go original's ``Send``: a Response for a call, None for ``respond=False``."""
        params = seed_params(args)
        if not respond:
            await self._transport.send(self._conv.notify(cmd, params))
            return None
        return (await self._transport.exchange(self._conv.call(cmd, params))).response()

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
        return await self._transport.next_notification()

    @property
    def closed(self) -> bool:
        return self._transport.closed

    @property
    def dropped(self) -> int:
        """How many answers arrived for calls nobody waited for any more (late answers)."""
        return self._conv.dropped

    # -- for AsyncSubscription (the blocking client's hooks have the same names) -----------

    async def _open_feed(self, topic: str, params: dict[str, Any]) -> Feed:
        return (await self._transport.exchange(self._conv.subscribe(topic, params))).subscribed()

    async def _next_event(self, feed: Feed) -> Any:
        """The next event of ``feed``; END once unsubscribed; ConnectionClosedError once the
        connection is over."""
        return await self._transport.next_event(feed)

    async def _close_feed(self, feed: Feed, wait: bool = True) -> None:
        """Unsubscribe (idempotent): ``rpc.unsubscribe`` as a notification, awaited until written,
        or with ``wait=False`` queued without waiting (cleanup during a cancellation)."""
        if feed.ended is not None or self._transport.closed:
            return
        data = self._conv.unsubscribe(feed)
        self._transport.feed_changed(feed)
        if not wait:
            self._transport.send_soon(data)
            return
        with contextlib.suppress(ConnectionClosedError):  # the subscription ended with it
            await self._transport.send(data)


class AsyncSubscription:
    """Events of one ``rpc.subscribe`` on an :class:`~jrpc_unix.AsyncClient`'s connection.

    ::

        async with client.subscribe("stats", interval=0.5) as sub:    # rpc.subscribe
            async for data in sub:                                    # each event's data, in order
                print(data, sub.dropped)
        # leaving the block unsubscribes

    A bare ``async for data in client.subscribe(...)`` works too: it subscribes at its first
    step and stays subscribed until the server ends the subscription, :meth:`aclose` or the
    connection closes (a ``break`` does not unsubscribe: use the block when you may leave early).

    Iteration yields each event's ``data`` and stops once the subscription is closed; it raises
    ConnectionClosedError when the connection ends, since the server then ended it, not you. No
    method takes a timeout (trio's rule): bound waits with ``trio.fail_after``. Leaving the block
    sends ``rpc.unsubscribe`` as a notification (awaited until written; a later call on the
    client sees it done); leaving it by an exception or a cancellation only queues it, so cleanup
    never delays the cancellation.
    """

    def __init__(self, client: AsyncClient, topic: str, params: dict[str, Any]) -> None:
        self._client = client
        self._topic = topic
        self._params = params
        self._feed: Feed | None = None
        self._entered = False

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
    def seq(self) -> int | None:
        """As :attr:`jrpc_unix.Subscription.seq`: resume with ``since=sub.seq, epoch=sub.epoch``."""
        return self._live.seq

    @property
    def epoch(self) -> str | None:
        return self._live.epoch

    @property
    def resumed(self) -> dict[str, Any] | None:
        return self._live.resumed

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
        if self._entered:
            raise RuntimeError("a subscription is entered once")
        self._entered = True
        self._feed = await self._client._open_feed(self._topic, self._params)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._feed is not None:
            await self._client._close_feed(self._feed, wait=exc_type is None)

    def __aiter__(self) -> AsyncSubscription:
        return self

    async def __anext__(self) -> Any:
        if self._feed is None:  # a bare `async for`: subscribe at its first step
            await self.__aenter__()
        data = await self._client._next_event(self._live)
        if data is END:
            raise StopAsyncIteration
        return data

    async def aclose(self) -> None:
        """Unsubscribe now (idempotent); events not yet read are discarded."""
        await self._client._close_feed(self._live)

    def __repr__(self) -> str:
        feed = self._feed
        state = "not entered" if feed is None else f"{feed.id} {feed.ended or 'live'}"
        return f"<AsyncSubscription {self._topic!r} {state}>"


@asynccontextmanager
async def open_client(
    path: str | os.PathLike[str],
    *,
    connect_timeout: float | None = 30.0,
    max_message_size: int = DEFAULT_MAX_ANSWER,
    framing: str = "newline",
    log: Callable[[str], None] | None = None,
) -> AsyncIterator[AsyncClient]:
    """Connect to the server at ``path``; the connection closes when the block ends.

    While the server's accept queue is full, connecting is retried for up to ``connect_timeout``
    seconds (None: until cancelled), then raises ConnectError. ``framing`` as for
    :class:`~jrpc_unix.Client` (``"unixsock"``: a server of the Go original). An ``ssh://``
    address (specs/remote.md) runs ssh with that ConnectTimeout and tells ``log(line)`` how; if
    ssh or the remote side fails, the first call raises ConnectError quoting ssh.
    """
    address = os.fspath(path)
    translate = None if framing == "newline" else ClientFraming(framing, max_message_size)
    stream: trio.abc.Stream
    if is_ssh(address):
        from .ssh_trio import SshTrioStream

        stream = SshTrioStream(address, connect_timeout, log)
    else:
        stream = await connect_unix(address, connect_timeout)
    if translate is not None:
        stream = FramedTrioStream(stream, translate)
    async with client_over(address, stream, max_message_size) as client:
        yield client


@asynccontextmanager
async def client_over(
    address: str, stream: trio.abc.Stream, max_message_size: int = DEFAULT_MAX_ANSWER
) -> AsyncIterator[AsyncClient]:
    """An AsyncClient over any connected ``stream`` (closed when the block ends), its transport's
    reader and writer running for the block. ``address`` names it in messages."""
    transport = TrioTransport(address, stream, Conversation(max_message_size))
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.read_loop)
            nursery.start_soon(transport.write_loop)
            try:
                yield AsyncClient(transport)
            except BaseException as exc:  # re-raised below, unwrapped by the nursery
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
    finally:
        transport.shut(CLIENT_CLOSED)
        if failure is None:
            with trio.CancelScope(shield=True):
                await stream.aclose()
        else:  # trio's idiom for "no graceful cleanup": an ssh stream then ends ssh at once
            await trio.aclose_forcefully(stream)
    if failure is not None:
        try:
            raise failure
        finally:
            failure = None
