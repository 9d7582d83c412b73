"""Reaching a server's socket: the address to connect to, why it could not be reached, and the
blocking client's small socket chores.

Shared by both clients (and stdlib only, so the blocking client and the command line stay light).
Messages are for a person at a terminal: they name the path and the reason in words.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import select
import socket
import stat
import struct
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .._errors import ConnectError, ProtocolError

if TYPE_CHECKING:
    from .._wire.conversation import Conversation

__all__ = [
    "MAX_PATH_BYTES",
    "connect_address",
    "connect_error",
    "connect_waiting",
    "drain",
    "remaining",
    "still_open",
    "wait_readable",
]

#: sun_path holds 108 bytes on Linux, including the terminating NUL.
MAX_PATH_BYTES = 107


@contextlib.contextmanager
def connect_address(path: str) -> Iterator[str]:
    """The address to ``connect`` to for ``path``, even past the kernel's 107-byte limit.

    ``@name`` is a Linux abstract address. A longer file path is reached through
    ``/proc/self/fd/<directory fd>/<name>`` (the server binds the same way), so only a file name
    that is itself too long fails.
    """
    if path.startswith("@"):
        addr = "\0" + path[1:]
    elif len(os.fsencode(path)) <= MAX_PATH_BYTES:
        yield path
        return
    else:
        directory, name = os.path.split(os.path.abspath(path))
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise connect_error(path, exc) from None
        try:
            addr = f"/proc/self/fd/{fd}/{name}"
            if len(os.fsencode(addr)) <= MAX_PATH_BYTES:
                yield addr
                return
        finally:
            os.close(fd)
    size = len(os.fsencode(addr))
    if size > MAX_PATH_BYTES:
        raise ConnectError(
            f"cannot connect to {path}: the address is {size} bytes long; the kernel allows at most "
            f"{MAX_PATH_BYTES} (use a shorter file name)"
        )
    yield addr


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
        reason = (
            "connection refused (a stale socket file: no server is listening on it)"
            if is_socket or path.startswith("@")
            else "it is not a socket"
        )
    elif code == errno.ENOTDIR:
        reason = "a component of the path is not a directory"
    elif code == errno.EAGAIN:
        reason = "the server is not accepting connections: its accept queue "
        reason += "is full" if not waited else f"stayed full for {waited:.1f} s"
        reason += " (it is overloaded or stuck)"
    else:
        reason = exc.strerror or str(exc)
    return ConnectError(f"cannot connect to {path}: {reason}")


# -- the blocking client's socket chores ---------------------------------------------------------


def connect_waiting(sock: socket.socket, addr: str, deadline: float | None) -> None:
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
            sock.connect(addr)
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
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", min(whole, 2**31 - 1), part))


def remaining(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (a monotonic time; None: no limit), never quite zero."""
    if deadline is None:
        return None
    return max(deadline - time.monotonic(), 0.000001)


def wait_readable(sock: socket.socket, deadline: float | None) -> bool:
    """Wait until ``sock`` has something to read (or EOF); False when the deadline passed.

    Waiting in poll rather than in a blocking recv means Ctrl-C interrupts the wait, never a
    read that already took bytes off the socket, so the client's stream stays in step.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    if deadline is None:
        return bool(poller.poll())
    left = deadline - time.monotonic()
    return left > 0 and bool(poller.poll(math.ceil(left * 1000)))


def drain(sock: socket.socket, conv: Conversation) -> None:
    """Feed ``conv`` whatever the closed peer sent and we have not read; never blocks."""
    sock.settimeout(0.0)
    try:
        while data := sock.recv(65536):
            conv.receive_data(data)
        conv.receive_eof()
    except (OSError, ProtocolError):
        pass


def still_open(sock: socket.socket) -> bool:
    """False if the peer has closed (EOF waiting) or reset the connection; never blocks."""
    sock.settimeout(0.0)  # with a timeout set, CPython would first wait for readability
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
