"""The service's own methods, under the ``rpc.`` prefix the spec reserves for extensions.

``rpc.stats``, ``rpc.topics``, ``rpc.subscribe``, ``rpc.unsubscribe`` and ``rpc.cancel`` need
only ``read`` access: they show figures and steer the caller's own connection, nothing else
(``rpc.cancel`` of another connection's call needs ``admin``). A topic's events need the
topic's own level, checked by ``rpc.subscribe`` before anything else. The operator's built-ins
are in the ``builtins_*`` modules beside this one (specs/operations.md lists them all).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

import trio

from .._errors import ErrorCode, RpcError
from .._service.access import Access
from .._service.context import ConnectionHandle, current_context
from .._service.discover import add_discover
from .._service.limits import Limits
from .._service.methods import Methods, MethodSpec
from .._service.stats import ServerStats
from .._service.throttle import Throttle
from .audit import Audit, audit_methods
from .builtins_admin import admin_methods, find_connection
from .builtins_health import Health, ServiceInfo, info_methods
from .builtins_log import LogLevels, log_methods
from .builtins_metrics import metrics_methods
from .pubsub import PROGRESS_TOPIC, Encoded, Topic, event_bytes
from .shared import ConnectionSet
from .slowlog import SlowLog

__all__ = ["Operations", "Served", "builtin_methods", "builtin_topics", "without"]

MAX_QUEUE = 10_000
MIN_INTERVAL = 0.05  # of the stats topic, in seconds
throttled_log = Throttle(logging.getLogger("jrpc_unix.server"))  # log lines any client can cause


def builtin_topics(server_stats: ServerStats) -> list[Topic]:
    shared: list[Any] = [None, b""]  # (key, encoded snapshot), shared by its subscribers

    def stats(interval: float = 1.0) -> AsyncIterator[Encoded]:
        """``rpc.stats`` now, then at each multiple of ``interval`` seconds (at least 0.05)."""
        if type(interval) not in (int, float) or not MIN_INTERVAL <= interval < math.inf:
            raise ValueError(f"interval must be a number of seconds >= 0.05, not {interval!r}")
        return _ticks(interval)  # (checked here, when subscribing; _ticks runs at the first event)

    def snapshot(key: tuple[str, float]) -> Encoded:
        # One snapshot (not cheap: specs/performance.md) and its encoding for all subscribers on a tick.
        if shared[0] != key:
            shared[:] = [key, Encoded(event_bytes(server_stats.snapshot()))]
        encoded: Encoded = shared[1]
        return encoded

    async def _ticks(interval: float) -> AsyncIterator[Encoded]:
        yield snapshot(("now", math.floor(trio.current_time() / MIN_INTERVAL)))  # <= 0.05 s old
        while True:
            # On the clock's multiples of interval (the next one at least half an interval
            # away): subscribers with the same interval wake together and share a snapshot.
            tick = math.ceil((trio.current_time() + interval / 2) / interval) * interval
            await trio.sleep_until(tick)
            yield snapshot(("tick", round(tick, 6)))

    read = Access.READ
    return [
        Topic("stats", stats, "the server's rpc.stats figures every `interval` seconds (default 1)", read),
        Topic(PROGRESS_TOPIC, None, "progress reports of this connection's own calls", read),
    ]


def _invalid(message: str) -> RpcError:
    return RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", message)


def _resume(topic: Topic, since: Any, epoch: Any, answer: dict[str, Any]) -> list[bytes]:
    """The kept events after ``since`` for a resumed subscription; says in ``answer`` whether
    some were lost (``truncated``, with the ``oldest`` seq kept) or the server restarted."""
    if topic.producer is not None or topic.name == PROGRESS_TOPIC:
        raise _invalid(f"topic {topic.name!r} cannot be resumed: only published topics keep events")
    if type(since) is not int or since < 0:
        raise _invalid(f"since must be the last seq seen (an integer >= 0), not {since!r}")
    if epoch is not None and type(epoch) is not str:
        raise _invalid(f"epoch must be the epoch of the events seen (a string), not {epoch!r}")
    restarted = epoch is not None and epoch != topic.epoch
    backlog, oldest, truncated = topic.after(0 if restarted else since)
    answer.update(epoch=topic.epoch, seq=topic.seq, truncated=truncated, oldest=oldest, restarted=restarted)
    return backlog


def builtin_methods(
    topics_: Mapping[str, Topic],
    limits: Limits,
    stats_: ServerStats,
    subscriptions_per_uid: Counter[int],
    connections: Callable[[], ConnectionSet],
    audit: Audit,
) -> dict[str, MethodSpec]:
    """The core ``rpc.*`` methods of a server with these topics, limits, figures and
    subscriptions: stats, topics, (un)subscribe, cancel."""

    def stats() -> dict[str, Any]:
        """Live figures of the service: connections, calls, errors and latency per method."""
        return stats_.snapshot()

    def topics() -> list[dict[str, str]]:
        """The topics this caller may subscribe to, with the access level each needs."""
        level = current_context().connection.level
        return [
            {"topic": t.name, "description": t.description, "access": t.access.name.lower()}
            for t in topics_.values()
            if t.access <= level
        ]

    def _check_room(conn: ConnectionHandle) -> None:
        """Refuse a subscription past the connection's or the user's limit (-32006)."""
        uid = conn.peer.uid if conn.peer is not None else -1
        if conn.subscription_count >= limits.max_subscriptions:
            key, text = "max_subscriptions", f"on this connection (limit {limits.max_subscriptions})"
        elif (per_uid := limits.max_subscriptions_per_uid) and subscriptions_per_uid[uid] >= per_uid:
            key, text = "max_subscriptions_per_uid", f"from uid {uid} (limit {per_uid})"
        else:
            return
        stats_.rejected_requests[key] += 1
        data = f"too many subscriptions {text}; unsubscribe from one first"
        raise RpcError(ErrorCode.OVERLOADED, "Server overloaded", data)

    def subscribe(
        topic: str, queue_size: int = 100, since: int | None = None, epoch: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Receive ``topic``'s events as ``rpc.event`` notifications on this connection; with
        ``since`` (and the ``epoch`` it was seen in), first those published after that seq."""
        conn = current_context().connection
        found = topics_.get(topic) if isinstance(topic, str) else None
        if found is None:
            names = sorted(t.name for t in topics_.values() if t.access <= conn.level)
            raise _invalid(f"no topic {topic!r}; topics: {', '.join(names)}")
        if found.access > conn.level:  # before any param is looked at: they are its business
            need, have = found.access.name.lower(), conn.level.name.lower()
            data = f"topic {topic!r} needs {need} access; you have {have}"
            stats_.rejected_requests["access_denied"] += 1
            throttled_log.warning("access_denied", "denied a subscription to %s: %s", conn.peer, data)
            if audit.enabled:
                audit.denied("rpc.subscribe", {"topic": topic}, conn.peer, conn.id, data)
            raise RpcError(ErrorCode.ACCESS_DENIED, "Access denied", data)
        _check_room(conn)
        if type(queue_size) is not int or not 1 <= queue_size <= MAX_QUEUE:
            raise _invalid(f"queue_size must be an integer from 1 to {MAX_QUEUE}")
        if found.producer is None and params:
            raise _invalid(f"topic {topic!r} takes no parameters")
        answer: dict[str, Any] = {"topic": topic}
        backlog = _resume(found, since, epoch, answer) if since is not None or epoch is not None else []
        if found.producer is None and topic != PROGRESS_TOPIC:  # where a later resume starts
            answer.update(epoch=found.epoch, seq=found.seq)
        events = None
        if found.producer is not None:
            try:
                inspect.signature(found.producer).bind(**params)
                # A producer that is a plain function checks its params right here, so a bad
                # one is refused now rather than ending the subscription at its first event.
                events = found.producer(**params)
            except (TypeError, ValueError) as exc:
                raise _invalid(f"topic {topic!r}: {exc}") from None
        found.keep_history()
        return {"subscription": conn.subscribe(topic, events, queue_size, backlog), **answer}

    def unsubscribe(subscription: str) -> bool:
        """Stop a subscription of this connection; False if there was none by that id."""
        if type(subscription) is not str:
            raise _invalid(f"subscription must be a string, not {subscription!r}")
        return current_context().connection.unsubscribe(subscription)

    def cancel(id: Any, connection: int | None = None) -> bool:
        """Cancel the running call with request id ``id``: this connection's, or (admin only)
        connection ``connection``'s; False if none runs."""
        if type(id) not in (str, int, float, type(None)):  # not bool: True would match id 1
            raise _invalid(f"id must be a request id (string, number or null), not {id!r}")
        own = current_context().connection
        if connection is None or (connection == own.id and type(connection) is int):
            return own.cancel(id)
        if own.level < Access.ADMIN:
            data = (
                f"cancelling another connection's call needs admin access; you have {own.level.name.lower()}"
            )
            stats_.rejected_requests["access_denied"] += 1
            throttled_log.warning("access_denied", "denied rpc.cancel to %s: %s", own.peer, data)
            if audit.enabled:
                audit.denied("rpc.cancel", {"id": id, "connection": connection}, own.peer, own.id, data)
            raise RpcError(ErrorCode.ACCESS_DENIED, "Access denied", data)
        other = find_connection(connections(), connection)
        return other is not None and other.cancel(id)

    read = Access.READ
    return {
        "rpc.stats": MethodSpec.build("rpc.stats", stats, access=read),
        "rpc.topics": MethodSpec.build("rpc.topics", topics, access=read),
        "rpc.subscribe": MethodSpec.build("rpc.subscribe", subscribe, access=read),
        "rpc.unsubscribe": MethodSpec.build("rpc.unsubscribe", unsubscribe, access=read),
        "rpc.cancel": MethodSpec.build("rpc.cancel", cancel, access=read, immediate=True),
    }


class Served(Protocol):
    """What the built-ins need of the :class:`~jrpc_unix.Server` (read when they are called)."""

    topics: dict[str, Topic]
    limits: Limits
    stats: ServerStats
    subscriptions_per_uid: Counter[int]
    connections: ConnectionSet
    methods: Methods
    discover: bool


class Operations:
    """What the operator's built-ins keep: who the service is, its health checks, log levels,
    slow calls and audit trail (one of each per :class:`~jrpc_unix.Server`)."""

    def __init__(
        self,
        name: str | None,
        version: str | None,
        slow_call_threshold: float | None,
        audit: bool,
        stopping: Callable[[], bool],
    ) -> None:
        self.info = ServiceInfo(name, version)
        self.health = Health(stopping)
        self.slowlog = SlowLog(slow_call_threshold)
        self.audit = Audit(audit)
        self.log_levels = LogLevels()

    def extensions(self, server: Served, disabled: frozenset[str]) -> dict[str, MethodSpec]:
        """Every ``rpc.*`` method of ``server`` but the ``disabled`` ones (specs/operations.md)."""

        def connections() -> ConnectionSet:
            return server.connections

        topics, limits, stats, per_uid = (
            server.topics,
            server.limits,
            server.stats,
            server.subscriptions_per_uid,
        )
        builtins = {
            **builtin_methods(topics, limits, stats, per_uid, connections, self.audit),
            **info_methods(self.info, self.health),
            **admin_methods(connections, self.slowlog),
            **log_methods(self.log_levels),
            **metrics_methods(stats),
            **audit_methods(self.audit),
        }
        return without(builtins, disabled, server.methods, server.discover, self.info)


def without(
    builtins: dict[str, MethodSpec],
    disabled: frozenset[str],
    methods: Methods,
    discover: bool,
    info: ServiceInfo,
) -> dict[str, MethodSpec]:
    """``builtins`` less the ``disabled`` ones, with ``rpc.discover`` unless it is one of them."""
    unknown = sorted(disabled - builtins.keys() - {"rpc.discover"})
    if unknown:
        known = ", ".join(sorted([*builtins, "rpc.discover"]))
        raise ValueError(f"disable_builtins: no built-in {', '.join(unknown)}; built-ins: {known}")
    kept = {name: spec for name, spec in builtins.items() if name not in disabled}
    if discover and "rpc.discover" not in disabled:
        return add_discover(kept, methods, info.name, info.version)
    return kept
