"""The blocking client: stdlib ``socket`` only, so scripts, threads and WSGI apps need no trio.

Importing this module never imports trio or jsonrpcserver (the command line depends on that to
start fast). The conversation itself (ids, matching, errors, where pushed events go) is
:mod:`._conversation`'s; the socket work is :mod:`._sync_io`'s.

Threads: one :class:`Client` carries one call at a time. Threads sharing it take turns on its
connection (a lock; waiting for the turn counts against the timeout), which is safe and keeps
one socket. Waiting for a subscription's next event is a turn too. For calls that must run in
parallel, or a thread that watches events while others call, give each thread its own Client.
"""

from __future__ import annotations

import contextlib
import socket
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from .._errors import ConnectionClosedError, ProtocolError, RpcError, TransportError
from .._wire.conversation import Call, Exchange
from .._wire.feeds import END, UNSUBSCRIBED, Feed
from .._wire.requests import Notification, Params, make_params, response_from, seed_params
from .blocking_io import MAX_KEPT_NOTIFICATIONS, Progress, SyncConnection, Trace

if TYPE_CHECKING:
    from .._response import Response
    from .subscription import Subscription

__all__ = ["MAX_KEPT_NOTIFICATIONS", "Client", "Progress", "Trace"]


class Client(SyncConnection):
    """A blocking JSON-RPC client for the server at ``path``; a context manager.

    It connects on first use and reconnects when the server closed an idle connection before a
    request was written. ``timeout`` (seconds, None for none) bounds each whole call: waiting
    for the turn, connecting, writing and reading. After a timeout the connection is closed (a
    late answer cannot confuse the next call), ending its subscriptions; the next call reconnects.
    """

    # -- public API ------------------------------------------------------------------------

    def call(self, method: str, /, *args: Any, progress: Progress | None = None, **kwargs: Any) -> Any:
        """Call ``method`` and return its result; raises RpcError if the server answers an error.

        ``progress(done, total, message)`` is called for each progress report of this call, in
        order, before ``call`` returns (the connection subscribes to ``progress`` once, first).
        """
        return self._call(method, make_params(args, kwargs), progress).result()

    def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification; returns once it is written (no answer ever comes)."""
        self._run(lambda: (None, self._conv.notify(method, make_params(args, kwargs))))

    def batch(self, *items: Call) -> list[Any]:
        """Send calls and notifications as one message; results in call order.

        A failed call's place holds its RpcError instead of a result (it is not raised), so one
        failure does not hide the other answers. Notifications have no place.
        """
        exchange = self._run(lambda: self._conv.batch(items))
        return [] if exchange is None else exchange.results()

    def send(self, cmd: str, args: Any = None, respond: bool = True) -> Response | None:
        """The Go original's ``Send``: a Response for a call, None for ``respond=False``."""
        params = seed_params(args)
        if not respond:
            self._run(lambda: (None, self._conv.notify(cmd, params)))
            return None
        exchange = self._run(lambda: self._conv.call(cmd, params))
        return response_from(exchange.outcomes[exchange.ids[0]])

    def call_raw(
        self, method: str, params: Params = None, *, progress: Progress | None = None
    ) -> tuple[Any, bytes]:
        """Like :meth:`call` with ready params; also returns the answer line as received."""
        exchange = self._call(method, params, progress)
        return exchange.result(), exchange.raw[0]

    def subscribe(self, topic: str, /, **params: Any) -> Subscription:
        """Subscribe to ``topic`` (with its params, and ``queue_size``); iterate the result for
        each event's data. It lasts until closed (``with`` or ``close()``) or the connection ends.
        """
        from .subscription import Subscription

        exchange = self._run(lambda: self._conv.subscribe(topic, params))
        result = exchange.result()
        if exchange.feed is None:
            raise ProtocolError(f"rpc.subscribe answered without a subscription id: {result!r:.200}")
        return Subscription(self, exchange.feed)

    def wait_notification(self, timeout: float | EllipsisType | None = ...) -> Notification:
        """The next notification the server sent that no :meth:`subscribe` claimed.

        Waits up to ``timeout`` seconds (default: the client's; None: forever), then raises
        RpcTimeoutError. Notifications that arrive while a call waits are kept (the newest
        10,000) until taken here. A subscription lives as long as its connection.
        """
        seconds = self.timeout if isinstance(timeout, EllipsisType) else timeout
        deadline = self._take_turn(seconds)
        try:
            if not self._inbox:
                if self._sock is None:
                    raise ConnectionClosedError(f"{self.path}: not connected, so no notification can come")
                self._read_until(
                    lambda: bool(self._inbox), "a notification", "a notification came", deadline, True
                )
            return self._inbox.popleft()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the connection (idempotent). Later calls raise ConnectionClosedError."""
        self._closed = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):  # wakes a blocked reader; the fd stays valid
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._disconnect()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self._sock else "idle"
        return f"<Client {self.path!r} {state}>"

    # -- subscriptions (for Subscription) --------------------------------------------------

    def next_event(self, feed: Feed, timeout: float | EllipsisType | None = ...) -> Any:
        """The next event of ``feed``, waiting up to ``timeout`` (default: the client's);
        :data:`END` once it was unsubscribed; ConnectionClosedError once its connection ended."""
        seconds = self.timeout if isinstance(timeout, EllipsisType) else timeout
        deadline = self._take_turn(seconds)
        try:
            if not feed.events and feed.ended is None:
                what = f"an event of {feed.topic!r}"
                ready = lambda: bool(feed.events) or feed.ended is not None  # noqa: E731
                self._read_until(ready, what, f"{what} came", deadline, True)
            if feed.events:
                return feed.events.popleft()
            if feed.ended == UNSUBSCRIBED:
                return END
            raise ConnectionClosedError(f"{self.path}: the connection closed, and the subscription with it")
        finally:
            self._lock.release()

    def unsubscribe(self, feed: Feed) -> None:
        """End ``feed`` (idempotent): ``rpc.unsubscribe`` as a notification, so nothing is awaited
        but its writing, and a later call on this client sees it done. If the connection is lost
        meanwhile, so is the subscription."""
        if feed.ended is not None or self._closed:
            return
        with contextlib.suppress(TransportError):
            self._run(lambda: (None, self._conv.unsubscribe(feed)))

    # -- one exchange ----------------------------------------------------------------------

    def _call(self, method: str, params: Params, progress: Progress | None) -> Exchange:
        if progress is None:
            exchange: Exchange = self._run(lambda: self._conv.call(method, params))
            return exchange
        deadline = self._take_turn(self.timeout)
        try:
            if not self._conv.progress_subscribed:
                subscribe = lambda: self._conv.subscribe("progress", visible=False)  # noqa: E731
                subscribing = self._exchange(subscribe, deadline)
                with contextlib.suppress(RpcError):  # a server without progress: no reports
                    subscribing.result()
            build = lambda: self._conv.call(method, params, progress=True)  # noqa: E731
            exchange = self._exchange(build, deadline, progress)
            return exchange
        finally:
            self._lock.release()
