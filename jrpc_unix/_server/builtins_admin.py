"""What runs and who is connected: ``rpc.connections``, ``rpc.disconnect``, ``rpc.inflight``
(admin) and ``rpc.slowlog`` (read), and finding another connection for ``rpc.cancel``.

Redis's ``CLIENT LIST``/``CLIENT KILL``/``SLOWLOG`` and Ceph's ``dump_ops_in_flight``. Ages
and idle times are seconds, measured on the monotonic clock. ``rpc.inflight`` lists the calls
that run in a task or a worker thread (an inline synchronous call holds the event loop, so
nothing can ask while it runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .._errors import ErrorCode, RpcError
from .._service.access import Access
from .._service.methods import MethodSpec
from .connection import Connection
from .shared import ConnectionSet
from .slowlog import SlowLog, describe_peer

__all__ = ["admin_methods", "find_connection"]

MAX_LIMIT = 1000


def _invalid(message: str) -> RpcError:
    return RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", message)


def _check_limit(limit: Any) -> int:
    if type(limit) is not int or not 0 <= limit <= MAX_LIMIT:
        raise _invalid(f"limit must be an integer from 0 to {MAX_LIMIT}, not {limit!r}")
    return limit


def _connections(connections: ConnectionSet) -> list[Connection]:
    found = [c for c in connections.everyone() if isinstance(c, Connection)]
    return sorted(found, key=lambda c: c.id)


def find_connection(connections: ConnectionSet, connection: Any) -> Connection | None:
    """The live or detached connection numbered ``connection``, or None."""
    if type(connection) is not int:
        raise _invalid(f"connection must be a connection id (an integer), not {connection!r}")
    return next((c for c in _connections(connections) if c.id == connection), None)


def _describe(conn: Connection, now: float) -> dict[str, Any]:
    parts = conn.parts  # None: no byte has come yet
    schedule = parts.calls.schedule if parts is not None else None
    return {
        "id": conn.id,
        "peer": describe_peer(conn.peer),
        "access": conn.level.name.lower(),
        "framing": conn.framing,  # None until its first bytes came
        "age_s": round(now - conn.opened, 3),
        "idle_s": round(now - conn.active, 3),
        "in_flight": schedule.in_flight if schedule is not None else 0,
        "queued": len(schedule.queue) if schedule is not None else 0,
        "subscriptions": sorted(sub.topic for sub in parts.outbox.subscriptions.values()) if parts else [],
        "pending_output_bytes": parts.writer.pending + parts.outbox.queued_bytes if parts else 0,
        "state": "detached" if conn.gone else "open",
    }


def admin_methods(connections: Callable[[], ConnectionSet], slowlog: SlowLog) -> dict[str, MethodSpec]:
    """The ``rpc.*`` methods that show (and end) the server's connections and calls."""

    def rpc_connections() -> list[dict[str, Any]]:
        """Every connection: id, peer, framing, age, idle time, calls, subscriptions, output."""
        now = time.monotonic()
        return [_describe(conn, now) for conn in _connections(connections())]

    def rpc_disconnect(id: int) -> bool:
        """Close connection ``id`` now (its calls are cancelled); False if it had gone already."""
        conn = find_connection(connections(), id)
        if conn is None:
            raise _invalid(f"no connection {id!r}; see rpc.connections")
        return conn.disconnect()

    def rpc_inflight() -> list[dict[str, Any]]:
        """Every running call of every connection: connection, id, method, peer, age, progress."""
        now = time.monotonic()  # (this call is synchronous, so never among them)
        calls: list[dict[str, Any]] = []
        for conn in _connections(connections()):
            peer = describe_peer(conn.peer)
            for running in conn.parts.calls.schedule.executor.running if conn.parts is not None else ():
                progressed, key = running.progressed, running.key
                notification = not isinstance(key, (str, int, float, type(None)))
                calls.append(
                    {
                        "connection": conn.id,
                        "id": None if notification else key,
                        "notification": notification,
                        "method": running.method,
                        "peer": peer,
                        "age_s": round(now - running.started, 3),
                        "last_progress_s": None if progressed is None else round(now - progressed, 3),
                    }
                )
        return calls

    def rpc_slowlog(limit: int = 20) -> dict[str, Any]:
        """The newest calls slower than the threshold (newest first), and the threshold."""
        return {"threshold_ms": _ms(slowlog.threshold), "calls": slowlog.newest(_check_limit(limit))}

    admin, read = Access.ADMIN, Access.READ
    return {
        "rpc.connections": MethodSpec.build("rpc.connections", rpc_connections, access=admin),
        "rpc.disconnect": MethodSpec.build("rpc.disconnect", rpc_disconnect, access=admin),
        "rpc.inflight": MethodSpec.build("rpc.inflight", rpc_inflight, access=admin),
        "rpc.slowlog": MethodSpec.build("rpc.slowlog", rpc_slowlog, access=read),
    }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)
