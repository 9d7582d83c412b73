"""The blocking client's transport: one stream at a time, a turn lock, and deadlines.

:class:`BlockingTransport` connects on first use, writes a message whole, and reads until its
answer, matching the events the sans-IO conversation returns; :class:`~.blocking.Client` has one
and adds the public API. Standard library only, so the command line stays light. The bytes go
through a :class:`~.transport.BlockingStream` (a UNIX socket: :mod:`.connect`).

Every read waits first and then takes what is there without blocking: Ctrl-C interrupts a wait,
never a read that already took bytes off the stream, so after it the connection is still in
step (``jrpc-unix watch`` unsubscribes on Ctrl-C). An interruption while bytes are being taken
in, or any failure mid-exchange, closes the connection instead.
"""

from __future__ import annotations

import _thread
import time

from .._errors import ConnectError, ConnectionClosedError, ProtocolError, RpcTimeoutError
from .._wire.events import Answered, MustSend
from .connect import UnixSocketStream

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:  # types only: each module imported costs the command line's cold start
    from collections.abc import Callable
    from typing import Any, TypeVar

    from .._wire.conversation import Conversation, Exchange
    from .transport import BlockingStream

    #: Called with ("send", bytes) and ("recv", line) for every message, to watch the wire.
    Trace = Callable[[str, bytes], None]
    #: Opens a stream to an address by a deadline, or raises ConnectError.
    Connect = Callable[[str, float | None], BlockingStream]
    #: What a message builder returns: the exchange to wait on (None: a notification), the bytes.
    Built = tuple[Any, bytes]
    _T = TypeVar("_T")

__all__ = ["BlockingTransport"]


class BlockingTransport:
    """One connection at a time to ``address``, used by one caller at a time (a turn)."""

    def __init__(
        self,
        address: str,
        conversation: Conversation,
        *,
        trace: Trace | None = None,
        connect: Connect = UnixSocketStream.connect,
        connect_timeout: float | None = None,
    ) -> None:
        self.address = address
        self.connect_timeout = connect_timeout
        self.conversation = conversation
        self.trace = trace
        self._connect = connect
        self._stream: BlockingStream | None = None
        #: The server answered on this connection, so it admitted it (a refusal is sent first).
        self.admitted = False
        self._lock = _thread.allocate_lock()  # threading.Lock without importing threading
        self._closed = False
        self._op_timeout: float | None = None  # the running operation's, for its timeout message

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def connected(self) -> bool:
        return self._stream is not None

    # -- turns -----------------------------------------------------------------------------

    def in_turn(self, op: Callable[[float | None], _T], timeout: float | None) -> _T:
        """Run ``op(deadline)`` holding the connection; waiting for the turn counts against
        ``timeout``, which bounds the whole operation."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise self.timeout_error("waiting for another thread's call on this client", timeout)
        try:
            self._op_timeout = timeout
            if self._closed:
                raise ConnectionClosedError(f"the client for {self.address} is closed")
            return op(deadline)
        finally:
            self._lock.release()

    def exchange(self, build: Callable[[], Built], timeout: float | None) -> Any:
        """Send what ``build`` makes and wait for its answer, in a turn of its own."""
        return self.in_turn(lambda deadline: self.send_and_wait(build, deadline), timeout)

    def send_and_wait(self, build: Callable[[], Built], deadline: float | None) -> Any:
        """Send what ``build`` makes and wait for its answer, handing progress reports on as
        they come; the caller holds the turn. ``build`` runs again after a reconnect."""
        first = build()  # bad params fail here, before the connection is touched
        try:
            exchange = self._write(first, build, deadline)
            if exchange is not None:
                self._wait_answer(exchange, deadline)
                self.admitted = True
        except BaseException:
            self._disconnect()  # also after Ctrl-C mid-write: the stream may hold half a line
            raise
        return exchange

    def ensure_open(self, deadline: float | None) -> None:
        """Be connected, on a stream the server has not closed (it closes idle ones)."""
        if self._stream is not None and not self._stream.still_open():
            self._disconnect()
        self._connected(deadline)

    def open(self, wait: float, timeout: float | None) -> None:
        """Be connected, waiting up to ``wait`` seconds for a server that is not up yet (no
        socket file, or nobody listening), each attempt bounded by ``timeout``; the caller holds
        the turn. Polls every 20 ms: a starting service's socket appears with nothing to wait on."""
        until = time.monotonic() + wait
        while True:
            try:
                self.ensure_open(None if timeout is None else time.monotonic() + timeout)
                return
            except ConnectError as exc:
                left = until - time.monotonic()
                if not exc.not_up or left <= 0:
                    raise
                time.sleep(min(0.02, left))

    def close(self) -> None:
        """Close the connection (idempotent), waking a thread that waits on it."""
        self._closed = True
        stream = self._stream
        if stream is not None:
            stream.interrupt()
        with self._lock:
            self._disconnect()

    # -- writing ---------------------------------------------------------------------------

    def _write(self, first: Built, build: Callable[[], Built], deadline: float | None) -> Any:
        """Send ``first``; if the server had closed the idle connection, reconnect.

        A connection found closed before anything was written is replaced, and the message is
        built anew for the new connection (a fresh id), so nothing is ever sent twice.
        """
        exchange, data = first
        reused = self._stream is not None
        stream = self._connected(deadline)
        if reused and not stream.still_open():
            self._disconnect()
            stream, reused = self._connected(deadline), False
            exchange, data = build()
        try:
            self._send(stream, data, deadline)
        except (BrokenPipeError, ConnectionResetError):
            if not reused:  # refused at once: read why (an overloaded server says so, then closes)
                self._drain(stream)
                self._disconnect()
                if exchange is not None and exchange.done:
                    return exchange
                raise self.closed_error("before the request was sent") from None
            self._disconnect()
            exchange, data = build()  # it closed the idle connection just now: retry once
            self._send(self._connected(deadline), data, deadline)
        return exchange

    def _send(self, stream: BlockingStream, data: bytes, deadline: float | None) -> None:
        try:
            stream.send_all(data, deadline)
        except TimeoutError:
            self._disconnect()
            raise self.timeout_error("sending the request") from None
        if self.trace is not None:
            self.trace("send", data.rstrip(b"\n"))

    def _drain(self, stream: BlockingStream) -> None:
        """Feed the conversation what the closed peer sent and we have not read; never blocks."""
        conv = self.conversation
        try:
            while data := stream.receive_some():
                conv.receive_data(data)
            conv.receive_eof()
        except (OSError, ProtocolError):
            pass

    # -- reading ---------------------------------------------------------------------------

    def _wait_answer(self, exchange: Exchange, deadline: float | None) -> None:
        ready = exchange.ready  # (a bound method: no closure, no property, per call)
        while True:
            if not ready():
                self.read_until(ready, exchange.label, deadline, answer=True)
            if exchange.reports:
                exchange.hand_on_reports()
            if exchange.done:
                return

    def read_until(
        self,
        ready: Callable[[], bool],
        what: str,
        deadline: float | None,
        keep_on_timeout: bool = False,
        *,
        answer: bool = False,
    ) -> None:
        """Read until ``ready()``, waiting for ``what`` (``answer``: the answer to ``what``). A
        timeout closes the connection (a late answer must not meet the next call) unless nothing
        is pending, as when waiting for notifications."""
        stream = self._stream
        assert stream is not None
        conv = self.conversation
        while not ready():
            if not stream.wait_readable(deadline):
                if not keep_on_timeout:
                    self._disconnect()
                raise self.timeout_error(f"waiting for {'the answer to ' if answer else ''}{what}")
            try:
                data = stream.receive_some()
                events = conv.receive_data(data) if data else conv.receive_eof()
            except BlockingIOError:
                continue
            except OSError as exc:
                self._disconnect()
                before = f"answering {what}" if answer else f"{what} came"
                raise ConnectionClosedError(
                    f"{self.address}: the connection failed before {before} ({exc.strerror or exc})"
                ) from None
            except BaseException:  # a protocol error, or interrupted holding bytes not yet parsed
                self._disconnect()
                raise
            for event in events:  # other events wake the caller: its ready() looks at the state
                if type(event) is MustSend:
                    self._send(stream, event.data, deadline)
                elif type(event) is Answered and self.trace is not None:
                    for line in event.exchange.raw:
                        self.trace("recv", line)
            if not data and not ready():
                self._disconnect()
                raise self.closed_error(f"before answering {what}" if answer else f"before {what} came")

    # -- errors and the connection ---------------------------------------------------------

    def closed_error(self, when: str) -> ConnectionClosedError:
        return self.conversation.closed_error(f"{self.address}: the server closed the connection {when}")

    def timeout_error(self, doing: str, seconds: float | None = None) -> RpcTimeoutError:
        seconds = self._op_timeout if seconds is None else seconds
        return RpcTimeoutError(f"{self.address}: timed out after {seconds:g} s {doing}")

    def _connected(self, deadline: float | None) -> BlockingStream:
        if self._stream is None:
            if self.connect_timeout is not None:  # the sooner of the two
                by = time.monotonic() + self.connect_timeout
                deadline = by if deadline is None else min(deadline, by)
            self._stream = self._connect(self.address, deadline)
            self.admitted = False
        return self._stream

    def _disconnect(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()
        self.conversation.connection_lost()
