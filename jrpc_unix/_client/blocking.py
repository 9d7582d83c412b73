"""The blocking client and its subscriptions: stdlib only, so scripts, threads and WSGI apps need
no trio.

Importing this module never imports trio or jsonrpcserver (the command line depends on that to
start fast). The conversation itself (ids, matching, errors, where pushed events go) is
:mod:`.._wire.conversation`'s; connecting, turns, deadlines and reading are the transport's
(:mod:`.blocking_io`).

Threads: one :class:`Client` carries one call at a time. Threads sharing it take turns on its
connection (a lock; waiting for the turn counts against the timeout), which is safe and keeps
one socket. Waiting for a subscription's next event is a turn too. For calls that must run in
parallel, or a thread that watches events while others call, give each thread its own Client.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from .._address import is_ssh
from .._errors import ConnectionClosedError, TransportError
from .._wire.conversation import DEFAULT_MAX_ANSWER, Call, Conversation, Exchange, Progress
from .._wire.feeds import END, UNSUBSCRIBED, Feed
from .._wire.requests import Notification, Params, make_params, seed_params
from .._wire.stdjson import loads
from .blocking_io import BlockingTransport
from .connect import UnixSocketStream

if TYPE_CHECKING:
    from .._response import Response
    from .blocking_io import Connect, Trace
    from .ssh import Log

__all__ = ["Client", "Subscription"]


class Client:
    """A blocking JSON-RPC client for the server at ``path``; a context manager.

    ``path`` is a socket path, ``@name``, or ``ssh://[user@]host[:port]/abs/path.sock``: the
    socket on another host, reached through the system's ssh (specs/remote.md); ``log(line)``
    is then told how.

    It connects on first use and reconnects when the server closed an idle connection before a
    request was written. ``timeout`` (seconds, None for none) bounds each whole call: waiting
    for the turn, connecting, writing and reading; it may be changed between calls. After a
    timeout the connection is closed (a late answer cannot confuse the next call), ending its
    subscriptions; the next call reconnects. ``trace(way, line)`` sees every message.
    ``connect_timeout`` bounds connecting alone (waiting in a full accept queue), within ``timeout``.
    ``framing`` is how messages are cut on the wire (specs/protocol.md, "Framings"): our server
    reads any; ``"unixsock"`` speaks to a server of the Go original.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        timeout: float | None = 30.0,
        *,
        max_message_size: int = DEFAULT_MAX_ANSWER,
        trace: Trace | None = None,
        framing: str = "newline",
        connect_timeout: float | None = None,
        log: Log | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self._conv = Conversation(max_message_size)
        connect: Connect = UnixSocketStream.connect
        if is_ssh(self.path):  # (imported only then, as framed below: the command line's cold start)
            from .ssh import SshStream

            connect = SshStream.connecting(log)
        if framing != "newline":
            from .framed import framed_connect

            connect = framed_connect(framing, max_message_size, connect)
        self._transport = BlockingTransport(
            self.path, self._conv, trace=trace, connect=connect, connect_timeout=connect_timeout
        )

    def connect(self, wait: float = 0.0) -> None:
        """Connect now rather than on first use, waiting up to ``wait`` seconds for a server
        that is not up yet (a script that starts a service, then configures it); else
        ConnectError. Each attempt is bounded by the timeout; the calls' count from here."""
        self._transport.in_turn(lambda _deadline: self._transport.open(wait, self.timeout), None)

    def call(self, method: str, /, *args: Any, progress: Progress | None = None, **kwargs: Any) -> Any:
        """Call ``method`` and return its result; raises RpcError if the server answers an error.

        ``progress(done, total, message)`` is called for each progress report of this call, in
        order, before ``call`` returns (the connection subscribes to ``progress`` once, first).
        """
        return self._call(method, make_params(args, kwargs), progress).result()

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification; returns once the server has admitted the connection.

        No answer ever comes to a notification, so on a new connection a cheap call
        (``rpc.topics``) follows it: its answer says the server took the connection. A server
        that refused it (-32006 overloaded, -32003 access denied) raises that RpcError here
        instead of the notification vanishing unnoticed.
        """
        self._notify(method, make_params(args, kwargs))

    def _notify(self, method: str, params: Params) -> None:
        def build() -> tuple[Exchange | None, bytes]:
            data = self._conv.notify(method, params)
            if self._transport.admitted and self._transport.connected:  # admitted already
                return None, data
            probe, probe_data = self._conv.call("rpc.topics")
            return probe, data + probe_data

        probe = self._transport.exchange(build, self.timeout)
        answer = loads(probe.raw[0]) if probe is not None and probe.raw else None
        if isinstance(answer, dict) and answer.get("id", 0) is None:
            probe.result()  # an error no request of ours caused: the refusal; raise it

    def batch(self, *items: Call) -> list[Any]:
        """Send calls and notifications as one message; results in call order.

        A failed call's place holds its RpcError instead of a result (it is not raised), so one
        failure does not hide the other answers. Notifications have no place.
        """
        exchange = self._transport.exchange(lambda: self._conv.batch(items), self.timeout)
        return [] if exchange is None else exchange.results()

    def send(self, cmd: str, args: Any = None, respond: bool = True) -> Response | None:
        """The Go original's ``Send``: a Response for a call, None for ``respond=False``."""
        params = seed_params(args)
        if not respond:
            self._notify(cmd, params)
            return None
        return self._call(cmd, params, None).response()

    def call_raw(
        self, method: str, params: Params = None, *, progress: Progress | None = None
    ) -> tuple[Any, bytes]:
        """Like :meth:`call` with ready params; also returns the answer line as received."""
        exchange = self._call(method, params, progress)
        return exchange.result(), exchange.raw[0]

    def subscribe(self, topic: str, /, *, resume: bool = False, **params: Any) -> Subscription:
        """Subscribe to ``topic`` (with its params, and ``queue_size``); iterate the result for
        each event's data. It lasts until closed (``with`` or ``close()``) or the connection ends;
        with ``resume`` (a published topic), a lost connection is reopened and the subscription
        resumed after the last event read (specs/protocol.md §10) instead.
        """
        return Subscription(self, self._open_feed(topic, params), params if resume else None)

    def wait_notification(self, timeout: float | EllipsisType | None = ...) -> Notification:
        """The next notification the server sent that no :meth:`subscribe` claimed.

        Waits up to ``timeout`` seconds (default: the client's; None: forever), then raises
        RpcTimeoutError. Notifications that arrive while a call waits are kept (the newest
        10,000) until taken here. A subscription lives as long as its connection.
        """
        inbox = self._conv.inbox

        def wait(deadline: float | None) -> Notification:
            if not inbox:
                if not self._transport.connected:
                    raise ConnectionClosedError(f"{self.path}: not connected, so no notification can come")
                what = "a notification"
                self._transport.read_until(lambda: bool(inbox), what, deadline, True)
            return inbox.popleft()

        return self._transport.in_turn(wait, self._seconds(timeout))

    def close(self) -> None:
        """Close the connection (idempotent). Later calls raise ConnectionClosedError."""
        self._transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        transport = self._transport
        state = "closed" if transport.closed else "connected" if transport.connected else "idle"
        return f"<Client {self.path!r} {state}>"

    # -- for Subscription (the trio client's hooks have the same names) -------------------

    def _open_feed(self, topic: str, params: dict[str, Any]) -> Feed:
        exchange: Exchange = self._transport.exchange(
            lambda: self._conv.subscribe(topic, params), self.timeout
        )
        return exchange.subscribed()

    def _next_event(self, feed: Feed, timeout: float | EllipsisType | None = ...) -> Any:
        """The next event of ``feed``, waiting up to ``timeout`` (default: the client's);
        :data:`END` once it was unsubscribed; ConnectionClosedError once its connection ended."""

        def wait(deadline: float | None) -> Any:
            if not feed.events and feed.ended is None:
                what = f"an event of {feed.topic!r}"
                ready = lambda: bool(feed.events) or feed.ended is not None  # noqa: E731
                self._transport.read_until(ready, what, deadline, True)
            if feed.events:
                return feed.events.popleft()
            if feed.ended == UNSUBSCRIBED:
                return END
            raise ConnectionClosedError(f"{self.path}: the connection closed, and the subscription with it")

        return self._transport.in_turn(wait, self._seconds(timeout))

    def _close_feed(self, feed: Feed) -> None:
        """End ``feed`` (idempotent): ``rpc.unsubscribe`` as a notification, so nothing is awaited
        but its writing, and a later call on this client sees it done. If the connection is lost
        meanwhile, so is the subscription."""
        if feed.ended is not None or self._transport.closed:
            return
        with contextlib.suppress(TransportError):
            self._transport.exchange(lambda: (None, self._conv.unsubscribe(feed)), self.timeout)

    # -- one exchange ----------------------------------------------------------------------

    def _call(self, method: str, params: Params, progress: Progress | None) -> Exchange:
        conv, transport = self._conv, self._transport
        if progress is None:
            exchange: Exchange = transport.exchange(lambda: conv.call(method, params), self.timeout)
            return exchange

        def subscribed_call(deadline: float | None) -> Exchange:
            transport.ensure_open(deadline)  # a reconnect would lose the subscription made before it
            if not conv.progress_subscribed:
                transport.send_and_wait(conv.subscribe_progress, deadline)
            answered: Exchange = transport.send_and_wait(
                lambda: conv.call(method, params, progress=progress), deadline
            )
            return answered

        return transport.in_turn(subscribed_call, self.timeout)

    def _seconds(self, timeout: float | EllipsisType | None) -> float | None:
        return self.timeout if isinstance(timeout, EllipsisType) else timeout


class Subscription:
    """Events of one ``rpc.subscribe`` on a :class:`~jrpc_unix.Client`'s connection.

    ::

        with client.subscribe("stats", interval=0.5) as sub:   # rpc.subscribe
            for data in sub:                                   # each event's data, in order
                print(data, sub.dropped)
        # leaving the block calls rpc.unsubscribe

    Iteration yields each event's ``data`` and stops once the subscription is closed; it raises
    ConnectionClosedError if the connection ends (the server stopped, or a call on the same
    client timed out), because the server then ended the subscription, not the reader. Each wait
    is bounded by the client's timeout (``RpcTimeoutError``, which leaves the subscription and the
    connection alone), or by ``sub.events(timeout=...)``'s.
    """

    def __init__(self, client: Client, feed: Feed, resume: dict[str, Any] | None = None) -> None:
        self._client = client
        self._feed = feed
        self._resume = resume  # the params to subscribe again with, after a lost connection

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
    def seq(self) -> int | None:
        """The ``seq`` of the newest event received from a published topic (None before one):
        ``client.subscribe(topic, since=sub.seq, epoch=sub.epoch)`` resumes after it."""
        return self._feed.seq

    @property
    def epoch(self) -> str | None:
        """The server's epoch those events carried (a new one at each server start)."""
        return self._feed.epoch

    @property
    def resumed(self) -> dict[str, Any] | None:
        """Subscribed with ``since``: the answer's ``truncated``, ``oldest``, ``restarted``, ..."""
        return self._feed.resumed

    @property
    def closed(self) -> bool:
        """True once no more events can come (closed here, or the connection ended)."""
        return self._feed.ended is not None

    def __iter__(self) -> Subscription:
        return self

    def __next__(self) -> Any:
        """The next event's data, waiting up to the client's timeout."""
        data = self._next(...)
        if data is END:
            raise StopIteration
        return data

    def events(self, timeout: float | None) -> Iterator[Any]:
        """Each event's data, waiting up to ``timeout`` seconds for each (None: forever)."""
        while (data := self._next(timeout)) is not END:
            yield data

    def _next(self, timeout: float | EllipsisType | None) -> Any:
        while True:
            try:
                return self._client._next_event(self._feed, timeout)
            except ConnectionClosedError:
                feed = self._feed
                if self._resume is None or feed.seq is None or feed.ended == UNSUBSCRIBED:
                    raise
                # Every event received was read (they come before the error): resume after it.
                resumed = {**self._resume, "since": feed.seq, "epoch": feed.epoch}
                self._feed = self._client._open_feed(feed.topic, resumed)
                if self._feed.seq is None:  # (a resumed answer leaves it to the events)
                    self._feed.seq, self._feed.epoch = feed.seq, feed.epoch

    def close(self) -> None:
        """Unsubscribe (idempotent); events not yet read are discarded."""
        self._client._close_feed(self._feed)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = self._feed.ended or "live"
        return f"<Subscription {self.id} {self.topic!r} {state}, dropped {self.dropped}>"
