"""Who gets a connection, and what a refusal costs: no task, no wait, a bounded few descriptors.

Admission is decided in the accept loop, before any task exists. A refused peer (its user not
allowed by the policy, or a connection limit reached) gets one error line, sent only if the
socket takes it at once, and the end of what we send (``shutdown(SHUT_WR)``). The socket then
lingers, open, for up to a second in a pool of at most 32 (the oldest is closed for a newcomer),
so a client that writes its request before it reads (socat) does not fail with EPIPE before it
reads why; one task for the whole server closes them. A client that sends more than the socket
buffer holds (~200 kB) before reading may still miss the line.

Connections of other users share ``max_connections``; the server's own user and root may open
``reserved_connections`` more, so others together can never lock them out. Both are fitted into
RLIMIT_NOFILE when the server starts, so connections alone never exhaust the descriptors. If the
application exhausts them itself, a spare descriptor lets the server still tell waiting peers
why it refuses them instead of leaving them in the accept queue.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import socket as stdsocket
import struct
from collections.abc import Awaitable, Callable

import trio

from .._errors import ErrorCode
from .._service.access import Access, Peer, Policy
from .._service.limits import Limits, fd_budget
from .._service.stats import ServerStats
from .._service.throttle import Throttle
from .._wire.messages import encode_error

__all__ = ["Admission", "read_peer"]

log = logging.getLogger("jrpc_unix.server")
throttled_log = Throttle(log)  # log lines any client can cause

#: How long a refused socket stays open at most, in seconds.
LINGER = 1.0
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
_PEERCRED = struct.Struct("3i")
#: Serves one admitted connection: its stream, its peer, its access level.
Serve = Callable[[trio.SocketStream, Peer | None, Access], Awaitable[object]]


def read_peer(stream: trio.SocketStream) -> Peer | None:
    """The peer's pid/uid/gid (SO_PEERCRED), or None where the platform has none."""
    try:
        raw = stream.socket.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_PEERCRED, _PEERCRED.size)
    except (OSError, AttributeError):
        return None
    pid, uid, gid = _PEERCRED.unpack(raw)
    return Peer(pid, uid, gid)


def _own(fd: int) -> stdsocket.socket:
    """A stdlib socket for ``fd``; it never waits, whatever socket.setdefaulttimeout() says."""
    sock = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM, 0, fd)
    sock.settimeout(0.0)
    return sock


def _tell(sock: stdsocket.socket, code: ErrorCode, text: str) -> None:
    """Send one error line if the socket takes it at once, and shut our sending side."""
    try:
        sock.send(encode_error(None, code, data=text) + b"\n", stdsocket.MSG_NOSIGNAL)
        sock.shutdown(stdsocket.SHUT_WR)
    except OSError:
        pass  # the peer left already, or its buffer is full: it only misses why


class Admission:
    """Counts connections by user, admits or refuses each newcomer, closes the refused."""

    def __init__(self, limits: Limits, policy: Policy | None, stats: ServerStats) -> None:
        self.policy = policy
        self.stats = stats
        self.limits = limits
        self.shared, self.reserved = limits.max_connections, limits.reserved_connections
        self.open = 0
        self.per_uid: collections.Counter[int] = collections.Counter()
        self.privileged = frozenset({0, os.getuid(), os.geteuid()})
        self._lingering: collections.deque[tuple[float, stdsocket.socket]] = collections.deque()
        self._max_lingering = 0
        self._refused = trio.lowlevel.ParkingLot()  # wakes the closer
        self._spare: int | None = None

    def start(self) -> None:
        """Fit the limits into RLIMIT_NOFILE (as it is now) and set the spare descriptor aside."""
        limits = self.limits
        self.shared, self.reserved, self._max_lingering = fd_budget(limits)
        if (self.shared, self.reserved) != (limits.max_connections, limits.reserved_connections):
            log.warning(
                "RLIMIT_NOFILE allows %d connections + %d reserved, not %d + %d: limits lowered",
                self.shared,
                self.reserved,
                limits.max_connections,
                limits.reserved_connections,
            )
        self.stats.connection_limits = (self.shared, self.reserved)
        self._open_spare()

    async def accept(
        self,
        listener: trio.SocketListener,
        serve: Serve,
        nursery: trio.Nursery,
        gate: tuple[Policy | None, Access] | None = None,
    ) -> None:
        """The accept loop: admit or refuse each newcomer right here, before any task exists
        (a refusal costs no task and no wait); ``serve`` each admitted one in ``nursery``.
        ``gate``: this socket's own (policy, ceiling), for a server on several sockets.

        Not ``trio.serve_listeners``: it starts a task per connection before anyone could
        refuse it, and meets EMFILE by waiting, where we tell the waiting peers why.
        """
        try:
            async with trio.open_nursery() as closer:
                closer.start_soon(self.close_refused)
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        if exc.errno not in _CAPACITY_ERRNOS:
                            raise
                        await self.out_of_fds(listener, exc.errno)
                        continue
                    peer = read_peer(stream)
                    level = self.enter(stream, peer, gate)
                    if level is not None:
                        nursery.start_soon(serve, stream, peer, level)
        finally:
            self.close()  # the refused sockets still lingering, and the spare descriptor

    def close(self) -> None:
        """Close the refused sockets still open and the spare descriptor."""
        while self._lingering:
            self._lingering.popleft()[1].close()
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    def refusal(self, peer: Peer | None, policy: Policy | None) -> tuple[ErrorCode, str, str] | None:
        """Why this peer may not have a connection now (code, stats key, text), or None."""
        if policy is not None and not policy.admits(peer):
            who = f"uid {peer.uid} gid {peer.gid}" if peer else "a peer without credentials"
            return ErrorCode.ACCESS_DENIED, "access_denied", f"{who} may not use this socket"
        if self.open >= self.shared:
            if peer is None or peer.uid not in self.privileged:
                return ErrorCode.OVERLOADED, "max_connections", f"too many connections (limit {self.shared})"
            if self.open >= self.shared + self.reserved:
                text = (
                    f"too many connections (limit {self.shared}, and all {self.reserved} "
                    "reserved for the server's user and root are taken)"
                )
                return ErrorCode.OVERLOADED, "reserved_connections", text
        per_uid = self.limits.max_connections_per_uid
        if peer is not None and per_uid is not None and self.per_uid[peer.uid] >= per_uid:
            text = f"too many connections from uid {peer.uid} (limit {per_uid})"
            return ErrorCode.OVERLOADED, "max_connections_per_uid", text
        return None

    def enter(
        self, stream: trio.SocketStream, peer: Peer | None, gate: tuple[Policy | None, Access] | None = None
    ) -> Access | None:
        """Count ``peer`` in and return its access level, or refuse it right here (None)."""
        policy, ceiling = (self.policy, Access.ADMIN) if gate is None else gate
        refusal = self.refusal(peer, policy)
        if refusal is not None:
            code, key, text = refusal
            self.stats.rejected_connections[key] += 1
            throttled_log.warning(key, "refused a connection: %s", text)
            self._refuse(_own(stream.socket.detach()), code, text)
            return None
        self.open += 1
        self.per_uid[peer.uid if peer is not None else -1] += 1
        if policy is not None and peer is not None:
            return min(policy.level(peer), ceiling)
        return ceiling

    def leave(self, peer: Peer | None) -> None:
        uid = peer.uid if peer is not None else -1
        self.open -= 1
        self.per_uid[uid] -= 1
        if not self.per_uid[uid]:
            del self.per_uid[uid]

    def _refuse(self, sock: stdsocket.socket, code: ErrorCode, text: str) -> None:
        _tell(sock, code, text)
        if len(self._lingering) >= self._max_lingering:
            if not self._max_lingering:
                sock.close()
                return
            self._lingering.popleft()[1].close()
        self._lingering.append((trio.current_time() + LINGER, sock))
        self._refused.unpark()

    async def close_refused(self) -> None:
        """Close each refused socket when its time is up (one task for the whole server)."""
        lingering = self._lingering
        while True:
            if not lingering:
                await self._refused.park()
                continue
            await trio.sleep_until(lingering[0][0])
            now = trio.current_time()
            while lingering and lingering[0][0] <= now:
                lingering.popleft()[1].close()

    async def out_of_fds(self, listener: trio.SocketListener, err: int) -> None:
        """accept failed for want of descriptors: tell the waiting peers why, then wait a while.

        The spare descriptor is given up for each accept and taken back after its refusal
        (closed at once: there is no descriptor to linger with), until no peer is waiting;
        without a spare, peers wait in the accept queue.
        """
        throttled_log.warning("accept_failed", "accept failed (%s); retrying in 100 ms", errno.errorcode[err])
        while self._spare is not None:
            os.close(self._spare)
            self._spare = None
            sock = _accept_now(listener)
            if sock is not None:
                self.stats.rejected_connections["out_of_fds"] += 1
                _tell(sock, ErrorCode.OVERLOADED, "the server is out of file descriptors")
                sock.close()
            self._open_spare()
            if sock is None:
                break
        await trio.sleep(0.1)

    def _open_spare(self) -> None:
        try:
            self._spare = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._spare = None  # another thread took the slot: peers wait, as without one


def _accept_now(listener: trio.SocketListener) -> stdsocket.socket | None:
    """One waiting peer's socket, or None if none is waiting; never waits."""
    listening = _own(listener.socket.fileno())  # a second view of trio's socket, detached below
    try:
        return _own(listening.accept()[0].detach())
    except OSError:
        return None
    finally:
        listening.detach()
