"""The blocking client's machinery: one socket, a turn lock, and exchanges bounded by a deadline.

:class:`SyncConnection` connects on first use, writes a message whole, and reads until its
answer (handing progress reports on as they come); :class:`~._sync_client.Client` adds the
public API on top. Standard library only, so the command line stays light.

Every read waits in ``poll`` first and then takes what is there without blocking: Ctrl-C
interrupts a wait, never a read that already took bytes off the socket, so after it the
connection is still in step (``jrpc-unix watch`` unsubscribes on Ctrl-C). An interruption
while bytes are being taken in, or any failure mid-exchange, closes the connection instead.
"""

from __future__ import annotations

import _thread
import collections
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from .._errors import ConnectionClosedError, RpcTimeoutError
from .._wire.conversation import DEFAULT_MAX_ANSWER, Conversation, Exchange
from .._wire.requests import Notification
from .connect import (
    connect_address,
    connect_error,
    connect_waiting,
    drain,
    remaining,
    still_open,
    wait_readable,
)

__all__ = ["MAX_KEPT_NOTIFICATIONS", "Progress", "SyncConnection", "Trace"]

#: Server notifications kept for wait_notification(); older ones are dropped beyond this.
MAX_KEPT_NOTIFICATIONS = 10_000

#: Called with ("send", bytes) and ("recv", line) for every message, to watch the wire.
Trace = Callable[[str, bytes], None]
#: Called as ``progress(done, total, message)`` for each progress report of a call.
Progress = Callable[[Any, Any, Any], object]


class SyncConnection:
    """One connection to ``path``, used by one caller at a time (see the module docstring)."""

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
        self._lock = _thread.allocate_lock()  # threading.Lock without importing threading
        self._closed = False
        self._op_timeout = timeout  # the running operation's, for its timeout message
        self._inbox: collections.deque[Notification] = collections.deque(maxlen=MAX_KEPT_NOTIFICATIONS)

    def _run(self, build: Callable[[], tuple[Any, bytes]]) -> Any:
        deadline = self._take_turn(self.timeout)
        try:
            return self._exchange(build, deadline)
        finally:
            self._lock.release()

    def _exchange(
        self, build: Callable[[], tuple[Any, bytes]], deadline: float | None, progress: Progress | None = None
    ) -> Any:
        """Send what ``build`` makes and wait for its answer; the caller holds the turn."""
        first = build()  # bad params fail here, before the connection is touched
        try:
            exchange = self._write(first, build, deadline)
            if exchange is not None:
                self._read_until_done(exchange, deadline, progress)
        except BaseException:
            self._disconnect()  # also after Ctrl-C mid-write: the stream may hold half a line
            raise
        return exchange

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
        if reused and not still_open(sock):
            self._disconnect()
            sock, reused = self._connected(deadline), False
            exchange, data = build()
        try:
            self._sendall(sock, data, deadline)
        except (BrokenPipeError, ConnectionResetError):
            if not reused:  # refused at once: read why (an overloaded server says so, then closes)
                drain(sock, self._conv)
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
            sock.settimeout(remaining(deadline))
            sock.sendall(data)
        except TimeoutError:
            self._disconnect()
            raise self._timeout_error("sending the request") from None

    def _read_until_done(self, exchange: Exchange, deadline: float | None, progress: Progress | None) -> None:
        """Read until ``exchange`` is answered, handing each progress report on as it comes."""
        label = exchange.label
        reports = exchange.reports if progress is not None else None

        def ready() -> bool:
            return exchange.done or bool(reports)

        while True:
            if not ready():
                self._read_until(ready, f"the answer to {label}", f"answering {label}", deadline)
            while reports and progress is not None:  # handed on and forgotten: memory stays flat
                report = reports.popleft()
                progress(report.get("done"), report.get("total"), report.get("message"))
            if exchange.done:
                return

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
        sock.settimeout(0.0)  # wait_readable does the waiting
        while not ready():
            if not wait_readable(sock, deadline):
                if not keep_on_timeout:
                    self._disconnect()
                raise self._timeout_error(f"waiting for {waiting}")
            try:
                data = sock.recv(65536)
                finished = self._conv.receive_data(data) if data else self._conv.receive_eof()
            except BlockingIOError:
                continue
            except OSError as exc:
                self._disconnect()
                raise ConnectionClosedError(
                    f"{self.path}: the connection failed before {before} ({exc.strerror or exc})"
                ) from None
            except BaseException:  # a protocol error, or interrupted holding bytes not yet parsed
                self._disconnect()
                raise
            self._inbox.extend(self._conv.take_notifications())
            self._conv.feeds.touched.clear()  # wake-ups are for the trio client; here we poll
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
        start = time.monotonic()
        try:
            with connect_address(self.path) as addr:
                connect_waiting(sock, addr, deadline)  # while the server's accept queue is full
        except OSError as exc:
            sock.close()
            raise connect_error(self.path, exc, time.monotonic() - start) from None
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
