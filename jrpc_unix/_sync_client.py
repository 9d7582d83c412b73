"""The blocking client: stdlib ``socket`` only, so scripts, threads and WSGI apps need no trio.

Importing this module never imports trio or jsonrpcserver (the command line depends on that to
start fast). The conversation itself (ids, matching, errors) is :mod:`._conversation`'s.

Threads: one :class:`Client` carries one call at a time. Threads sharing it take turns on its
connection (a lock; waiting for the turn counts against the timeout), which is safe and keeps
one socket. For calls that must run in parallel, give each thread its own Client.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any

from ._connect import connect_address, connect_error
from ._conversation import DEFAULT_MAX_ANSWER, Call, Conversation, Exchange, Notification, Params, make_params
from ._errors import ConnectionClosedError, ProtocolError, RpcError, RpcTimeoutError

if TYPE_CHECKING:
    from ._response import Response

__all__ = ["Client", "response_from"]

#: Server notifications kept for wait_notification(); older ones are dropped beyond this.
MAX_KEPT_NOTIFICATIONS = 10_000

#: Called with ("send", bytes) and ("recv", line) for every message, to watch the wire.
Trace = Callable[[str, bytes], None]


def response_from(exchange: Exchange) -> Response:
    """Seed compatibility: a call's answer as a Response (a protocol error is raised instead).

    An application error (code outside the reserved range) is ``Response.fail(message, code,
    data)``, as the Go original's ``Send`` returned FAIL; protocol errors (unknown method, bad
    params, internal error...) have no Response form and raise RpcError.
    """
    from ._response import Response  # only seed-style callers pay for it

    value = exchange.outcomes[exchange.ids[0]]
    if isinstance(value, RpcError):
        if -32768 <= value.code <= -32000:
            raise value
        return Response.fail(value.message, code=value.code, data=value.data)
    return Response.ok(value)


def _seed_params(args: Any) -> Params:
    if args is None or isinstance(args, (list, dict)):
        return args
    if isinstance(args, tuple):
        return list(args)
    raise TypeError(f"send() args must be a dict, list, tuple or None, not {type(args).__name__}")


class Client:
    """A blocking JSON-RPC client for the server at ``path``; a context manager.

    It connects on first use and reconnects when the server closed an idle connection before a
    request was written. ``timeout`` (seconds, None for none) bounds each whole call: waiting
    for the turn, connecting, writing and reading. After a timeout the connection is closed (a
    late answer cannot confuse the next call) and the next call reconnects.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        timeout: float | None = 30.0,
        *,
        max_message_size: int = DEFAULT_MAX_ANSWER,
        trace: Trace | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.timeout = timeout
        self.trace = trace
        self._conv = Conversation(max_message_size)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._op_timeout = timeout  # the running operation's, for its timeout message
        self._inbox: collections.deque[Notification] = collections.deque(maxlen=MAX_KEPT_NOTIFICATIONS)

    # -- public API ------------------------------------------------------------------------

    def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` and return its result; raises RpcError if the server answers an error."""
        return self._run(lambda: self._conv.call(method, make_params(args, kwargs))).result()

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
        params = _seed_params(args)
        if not respond:
            self._run(lambda: (None, self._conv.notify(cmd, params)))
            return None
        return response_from(self._run(lambda: self._conv.call(cmd, params)))

    def call_raw(self, method: str, params: Params = None) -> tuple[Any, bytes]:
        """Like :meth:`call` with ready params; also returns the answer line as received."""
        exchange = self._run(lambda: self._conv.call(method, params))
        return exchange.result(), exchange.raw[0]

    def wait_notification(self, timeout: float | EllipsisType | None = ...) -> Notification:
        """The next notification the server sent (``rpc.event`` after ``rpc.subscribe``).

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

    # -- one exchange ----------------------------------------------------------------------

    def _run(self, build: Callable[[], tuple[Any, bytes]]) -> Any:
        deadline = self._take_turn(self.timeout)
        try:
            first = build()  # bad params fail here, before the connection is touched
            try:
                exchange = self._write(first, build, deadline)
                if exchange is not None and not exchange.done:
                    self._read_until_done(exchange, deadline)
            except BaseException:
                self._disconnect()  # also after Ctrl-C mid-write: the stream may hold half a line
                raise
            return exchange
        finally:
            self._lock.release()

    def _take_turn(self, timeout: float | None) -> float | None:
        """Acquire the connection (bounded by ``timeout``); returns the operation's deadline."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise self._timeout_error("waiting for another thread's call on this client", timeout)
        self._op_timeout = timeout
        if self._closed:
            self._lock.release()
            raise ConnectionClosedError(f"the client for {self.path} is closed")
        return deadline

    def _write(
        self, first: tuple[Any, bytes], build: Callable[[], tuple[Any, bytes]], deadline: float | None
    ) -> Any:
        """Send ``first``; if the server had closed the idle connection, reconnect.

        A connection found closed before anything was written is replaced, and the message is
        built anew for the new connection (a fresh id), so nothing is ever sent twice.
        """
        exchange, data = first
        reused = self._sock is not None
        sock = self._connected(deadline)
        if reused and not _still_open(sock):
            self._disconnect()
            sock, reused = self._connected(deadline), False
            exchange, data = build()
        try:
            self._sendall(sock, data, deadline)
        except (BrokenPipeError, ConnectionResetError):
            if not reused:  # refused at once: read why (an overloaded server says so, then closes)
                _drain(sock, self._conv)
                self._disconnect()
                if exchange is not None and exchange.done:
                    return exchange
                raise self._closed_error("before the request was sent") from None
            self._disconnect()
            exchange, data = build()  # it closed the idle connection just now: retry once
            self._sendall(self._connected(deadline), data, deadline)
        if self.trace is not None:
            self.trace("send", data.rstrip(b"\n"))
        return exchange

    def _sendall(self, sock: socket.socket, data: bytes, deadline: float | None) -> None:
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(data)
        except TimeoutError:
            self._disconnect()
            raise self._timeout_error("sending the request") from None

    def _read_until_done(self, exchange: Exchange, deadline: float | None) -> None:
        label = exchange.label
        self._read_until(lambda: exchange.done, f"the answer to {label}", f"answering {label}", deadline)

    def _read_until(
        self,
        ready: Callable[[], bool],
        waiting: str,
        before: str,
        deadline: float | None,
        keep_on_timeout: bool = False,
    ) -> None:
        """Read until ``ready()``. A timeout closes the connection (a late answer must not meet
        the next call) unless nothing is pending, as when waiting for notifications."""
        sock = self._sock
        assert sock is not None
        while not ready():
            try:
                sock.settimeout(_remaining(deadline))
                data = sock.recv(65536)
            except TimeoutError:
                if not keep_on_timeout:
                    self._disconnect()
                raise self._timeout_error(f"waiting for {waiting}") from None
            except OSError as exc:
                self._disconnect()
                raise ConnectionClosedError(
                    f"{self.path}: the connection failed before {before} ({exc.strerror or exc})"
                ) from None
            try:
                finished = self._conv.receive_data(data) if data else self._conv.receive_eof()
            except ProtocolError:
                self._disconnect()
                raise
            self._inbox.extend(self._conv.take_notifications())
            if self.trace is not None:
                for line in (line for done in finished for line in done.raw):
                    self.trace("recv", line)
            if not data and not ready():
                self._disconnect()
                raise self._closed_error(f"before {before}")

    def _closed_error(self, when: str) -> ConnectionClosedError:
        said = self._conv.unattributed
        suffix = f" (the server said: {said[-1]})" if said else ""
        return ConnectionClosedError(f"{self.path}: the server closed the connection {when}{suffix}")

    def _timeout_error(self, doing: str, seconds: float | None = None) -> RpcTimeoutError:
        seconds = self._op_timeout if seconds is None else seconds
        return RpcTimeoutError(f"{self.path}: timed out after {seconds:g} s {doing}")

    # -- the connection --------------------------------------------------------------------

    def _connected(self, deadline: float | None) -> socket.socket:
        if self._sock is not None:
            return self._sock
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(_remaining(deadline))
            with connect_address(self.path) as addr:
                sock.connect(addr)
        except TimeoutError:
            sock.close()
            raise self._timeout_error("connecting") from None
        except OSError as exc:
            sock.close()
            raise connect_error(self.path, exc) from None
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        return sock

    def _disconnect(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        self._conv.reset()


def _remaining(deadline: float | None) -> float | None:
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.000001)


def _drain(sock: socket.socket, conv: Conversation) -> None:
    """Feed ``conv`` whatever the closed peer sent and we have not read; never blocks."""
    sock.settimeout(0.0)
    try:
        while data := sock.recv(65536):
            conv.receive_data(data)
        conv.receive_eof()
    except (OSError, ProtocolError):
        pass


def _still_open(sock: socket.socket) -> bool:
    """False if the peer has closed (EOF waiting) or reset the connection; never blocks."""
    sock.settimeout(0.0)  # with a timeout set, CPython would first wait for readability
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
