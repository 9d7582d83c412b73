"""The server's limits, with defaults safe for a control socket on a production host.

The connection defaults are systemd's sd-varlink's (4096 connections, 1024 per user). Each
connection is a file descriptor, so a server fits them into its RLIMIT_NOFILE when it starts
(:func:`fd_budget`); :func:`raise_fd_limit` lifts the soft limit first where the process is ours.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass, fields

__all__ = ["Limits", "fd_budget", "raise_fd_limit"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the server enforces; all configurable. ``None`` means unbounded."""

    #: Longest accepted message (one line, without its newline), in bytes.
    max_message_size: int = 1 << 20
    #: Most requests in one batch.
    max_batch: int = 100
    #: Most connections open at once, counting everyone's; beyond it only the server's own
    #: user and root are admitted, into ``reserved_connections`` more.
    max_connections: int = 4096
    #: Connections beyond ``max_connections`` kept for the server's own user and root, so that
    #: other users together can never lock them out.
    reserved_connections: int = 32
    #: Most connections open at once from one user (uid), the server's own and root included.
    max_connections_per_uid: int | None = 1024
    #: Most calls running at once on one connection; more wait in its queue.
    max_in_flight: int = 32
    #: Most requests waiting on one connection (behind a barrier, max_in_flight, or unsent
    #: answers); reading pauses beyond it.
    max_queued_requests: int = 256
    #: Most bytes of requests waiting on one connection; reading pauses beyond it.
    max_queued_bytes: int = 1 << 20
    #: Most blocking=True handlers running in worker threads at once, for the whole server
    #: (threads of abandoned calls are bounded by as many again).
    max_blocking_threads: int = 32
    #: Most blocking=True handlers running at once for one connection.
    max_blocking_per_connection: int = 8
    #: Close a connection after this many seconds with nothing received and nothing running,
    #: or with answers unread, or with one message still arriving, for that long.
    idle_timeout: float | None = 300.0
    #: Cancel a handler after this many seconds (answering "timed out"); per method overrides.
    handler_timeout: float | None = None
    #: On stop, how long in-flight calls may take to finish before they are cancelled.
    shutdown_grace: float = 5.0
    #: After that, how long to wait for worker threads still running (they cannot be cancelled)
    #: before the server returns without them.
    thread_grace: float = 10.0
    #: Unsent answer bytes on one connection above which the server stops reading from it.
    max_pending_output: int = 1 << 20
    #: Most subscriptions open at once on one connection; ``rpc.subscribe`` beyond it: -32006.
    max_subscriptions: int = 64
    #: Most subscriptions open at once from one user (uid), all its connections together.
    max_subscriptions_per_uid: int | None = 1024

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value <= 0:
                raise ValueError(f"Limits.{f.name} must be positive, not {value!r}")


_LINGERING = 32
#: Descriptors a server opens after run() raised the limit and before it sizes its connection
#: limits (trio's epoll and wakeup socket, the listening socket, a log file: ~6), with margin.
_STARTUP = 16


def _open_fds() -> int:
    """How many file descriptors this process has open (a guess where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
    except OSError:
        return 32


def _headroom(soft: int) -> int:
    """Descriptors left for what the application opens while it serves (files, sockets)."""
    return min(64, soft // 4)


def fd_budget(limits: Limits) -> tuple[int, int, int]:
    """``(max_connections, reserved_connections, lingering)`` that fit in RLIMIT_NOFILE now.

    ``lingering`` is how many refused sockets the server may keep open for a moment (see
    jrpc_unix._server.admission): up to 32. The connection limits shrink when the soft limit is too
    low for them (a connection past it would fail with EMFILE, and with it every accept, the
    owner's too); the reserve keeps up to half of what is left. Each stays at least 1.
    """
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    shared, reserved = limits.max_connections, limits.reserved_connections
    if soft == resource.RLIM_INFINITY:
        return shared, reserved, _LINGERING
    lingering = min(_LINGERING, soft // 16)
    free = soft - _open_fds() - _headroom(soft) - lingering - 1  # 1: the spare descriptor
    if free >= shared + reserved:
        return shared, reserved, lingering
    reserved = max(1, min(reserved, free // 2))
    return max(1, min(shared, free - reserved)), reserved, lingering


def raise_fd_limit(limits: Limits) -> None:
    """Raise the soft RLIMIT_NOFILE as far as ``limits`` need, never past the hard limit.

    Only for a process that is ours (:func:`jrpc_unix.run`): the limit is process-wide and
    inherited by children. Raised no further than needed, since software that still uses
    ``select()`` breaks on descriptors above 1024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = _open_fds() + _STARTUP + limits.max_connections + limits.reserved_connections + 64 + _LINGERING + 1
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
