"""Reaching a server's socket: why it could not be reached (both clients), and the blocking
client's byte stream over a stdlib UNIX socket.

Standard library only, so the blocking client and the command line stay light. Messages are for a
person at a terminal: they name the address and the reason in words.
"""

from __future__ import annotations

import array
import errno
import math
import os
import select
import socket
import stat
import time
from collections.abc import Callable, Generator

from .._address import is_abstract, socket_name
from .._errors import ConnectError

__all__ = ["UnixSocketStream", "connect_error", "connecting", "remaining"]

#: While the accept queue is full, retry after 1 ms, doubling up to 50 ms between tries.
_FIRST_RETRY, _LAST_RETRY = 0.001, 0.05


def connect_error(path: str, exc: OSError, waited: float | None = None) -> ConnectError:
    """A ConnectError whose message says, in words, why ``path`` cannot be reached.

    ``waited``: how long the client waited for room in the server's accept queue (EAGAIN).
    """
    code = exc.errno
    if code == errno.ENOENT:
        reason = "no such socket file (is the server running?)"
    elif code in (errno.EACCES, errno.EPERM):
        reason = "permission denied (check the mode and group of the socket file and its directory)"
    elif code == errno.ECONNREFUSED:
        try:
            is_socket = stat.S_ISSOCK(os.stat(path).st_mode)
        except OSError:
            is_socket = True
        if is_abstract(path):
            reason = "connection refused (no server is listening on this abstract name)"
        elif is_socket:
            reason = "connection refused (a stale socket file: no server is listening on it)"
        else:
            reason = "it is not a socket"
    elif code == errno.ENOTDIR:
        reason = "a component of the path is not a directory"
    elif code == errno.EAGAIN:
        reason = "the server is not accepting connections: its accept queue "
        reason += "is full" if not waited else f"stayed full for {waited:.1f} s"
        reason += " (it is overloaded or stuck)"
    else:
        reason = exc.strerror or str(exc)
    not_up = code == errno.ENOENT or (code == errno.ECONNREFUSED and reason != "it is not a socket")
    return ConnectError(f"cannot connect to {path}: {reason}", not_up=not_up)


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a monotonic time; None: no limit), never quite zero."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.000001)


def connecting(
    address: str, connect_timeout: float | None, clock: Callable[[], float]
) -> Generator[float | socket.socket, None, None]:
    """The event-loop clients' connect, sans-IO: while the accept queue of ``address`` is full
    (EAGAIN) it yields how long the driver should sleep before the next try, up to
    ``connect_timeout`` by the loop's ``clock``; last, the connected non-blocking socket.

    A UNIX connect never completes later (no EINPROGRESS): it succeeds or fails at once, and a
    full queue only says to try again; nothing signals when there is room, hence the retries.
    Closing the generator (its driver cancelled) closes the socket.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    start = clock()
    give_up = start + (math.inf if connect_timeout is None else connect_timeout)
    delay = _FIRST_RETRY
    try:
        with socket_name(address) as name:
            while True:
                try:
                    sock.connect(name)
                    break
                except BlockingIOError as exc:
                    now = clock()
                    if now >= give_up:
                        raise connect_error(address, exc, now - start) from None
                    yield min(delay, give_up - now)
                    delay = min(delay * 2, _LAST_RETRY)
    except OSError as exc:
        sock.close()
        raise connect_error(address, exc) from None
    except BaseException:
        sock.close()
        raise
    yield sock


class UnixSocketStream:
    """The blocking client's connection to a UNIX socket (a :class:`~._client.transport.BlockingStream`)."""

    def __init__(self, sock: socket.socket) -> None:
        # Non-blocking for good: CPython's timeouts would switch the mode (an ioctl) and poll
        # before each send; we poll only when the kernel says EAGAIN (specs/performance.md).
        sock.setblocking(False)
        self._sock = sock
        self._poller = select.poll()
        self._poller.register(sock, select.POLLIN)

    @classmethod
    def connect(cls, address: str, deadline: float | None) -> UnixSocketStream:
        """Connect to ``address``, waiting while its accept queue is full; ConnectError if not."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        start = time.monotonic()
        try:
            with socket_name(address) as name:
                _connect_waiting(sock, name, deadline)
        except OSError as exc:
            sock.close()
            raise connect_error(address, exc, time.monotonic() - start) from None
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    def send_all(self, data: bytes, deadline: float | None) -> None:
        """Write ``data`` whole; TimeoutError past ``deadline``; BrokenPipeError or
        ConnectionResetError if the server has closed."""
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent == len(data):  # (nearly always: no view, no slice)
            return
        view = memoryview(data)[sent:]
        while view:
            try:
                view = view[self._sock.send(view) :]
            except BlockingIOError:  # the server is not reading: wait for room, up to the deadline
                writable = select.poll()  # (rare: made when needed)
                writable.register(self._sock, select.POLLOUT)
                if not _poll(writable, deadline):
                    raise TimeoutError("timed out sending") from None

    def wait_readable(self, deadline: float | None) -> bool:
        """Wait until there is something to read (or EOF); False when the deadline passed.

        Waiting in poll rather than in a blocking recv means Ctrl-C interrupts the wait, never a
        read that already took bytes off the socket, so the client's stream stays in step.
        """
        return _poll(self._poller, deadline)

    def receive_some(self) -> bytes:
        """What is there to read, never blocking (BlockingIOError: nothing); b"" at EOF."""
        return self._sock.recv(65536)

    def still_open(self) -> bool:
        """False if the peer has closed (EOF waiting) or reset the connection; never blocks.

        Asks ``poll`` first: nothing to read (the common case, before each call) means open,
        with no ``BlockingIOError`` raised and caught; else a peek tells data from EOF.
        """
        if not self._poller.poll(0):
            return True
        try:
            return self._sock.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            return True
        except OSError:
            return False

    def interrupt(self) -> None:
        """From another thread: end a wait in :meth:`wait_readable` at once (the fd stays valid)."""
        try:  # (not contextlib.suppress: its import is a share of a CLI start)  # noqa: SIM105
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def close(self) -> None:
        self._sock.close()


def _poll(poller: select.poll, deadline: float | None) -> bool:
    """Wait for what ``poller`` watches; False once ``deadline`` (None: no limit) has passed."""
    if deadline is None:
        return bool(poller.poll())
    left = deadline - time.monotonic()
    return left > 0 and bool(poller.poll(math.ceil(left * 1000)))


def _connect_waiting(sock: socket.socket, name: str, deadline: float | None) -> None:
    """Connect, waiting while the server's accept queue is full, until ``deadline`` (None: no limit).

    A UNIX listener whose backlog is full answers a non-blocking connect with EAGAIN at once; a
    blocking one waits in the kernel until the server accepts, as long as the socket's send
    timeout allows (then EAGAIN). So the socket blocks here, bounded by ``SO_SNDTIMEO``, and
    ``KeyboardInterrupt`` still ends the wait. A signal handler that returns also interrupts it,
    and CPython then reports the socket connected when it is not: checked, and the wait resumed.
    """
    sock.setblocking(True)
    try:
        while True:
            _send_timeout(sock, None if deadline is None else remaining(deadline))
            sock.connect(name)
            try:
                sock.getpeername()
                return
            except OSError as exc:
                if exc.errno != errno.ENOTCONN:
                    raise
    finally:
        _send_timeout(sock, None)


def _send_timeout(sock: socket.socket, seconds: float | None) -> None:
    """``SO_SNDTIMEO``: at least 1 us when set (a zero ``timeval`` means no limit)."""
    micros = 0 if seconds is None else max(math.ceil(seconds * 1_000_000), 1)
    whole, part = divmod(micros, 1_000_000)
    # struct timeval as two C longs, as struct.pack("@ll", ...) would write them (array: socket
    # imports it already, struct would be one more module at every CLI start)
    timeval = array.array("l", (min(whole, 2**31 - 1), part)).tobytes()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
