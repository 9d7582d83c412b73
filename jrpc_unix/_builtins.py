"""The service's own methods, under the ``rpc.`` prefix the spec reserves for extensions.

``rpc.stats``, ``rpc.topics``, ``rpc.subscribe``, ``rpc.unsubscribe`` and ``rpc.cancel`` need
only ``read`` access: they show figures and steer the caller's own connection, nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import trio

from ._access import Access
from ._context import current_context
from ._errors import ErrorCode, RpcError
from ._methods import MethodSpec
from ._pubsub import PROGRESS_TOPIC, Topic

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["builtin_methods", "builtin_topics"]

MAX_QUEUE = 10_000


def builtin_topics(server: Server) -> list[Topic]:
    def stats(interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        """``rpc.stats`` every ``interval`` seconds (at least 0.05)."""
        if type(interval) not in (int, float) or interval < 0.05:  # checked when subscribing
            raise ValueError(f"interval must be a number of seconds >= 0.05, not {interval!r}")
        return _every(interval)

    async def _every(interval: float) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield server.stats.snapshot()
            await trio.sleep(interval)

    return [
        Topic("stats", stats, "the server's rpc.stats figures every `interval` seconds (default 1)"),
        Topic(PROGRESS_TOPIC, None, "progress reports of this connection's own calls"),
    ]


def _invalid(message: str) -> RpcError:
    return RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", message)


def builtin_methods(server: Server) -> dict[str, MethodSpec]:
    def stats() -> dict[str, Any]:
        """Live figures of the service: connections, calls, errors and latency per method."""
        return server.stats.snapshot()

    def topics() -> list[dict[str, str]]:
        """The topics a client can subscribe to."""
        return [{"topic": t.name, "description": t.description} for t in server.topics.values()]

    def subscribe(topic: str, queue_size: int = 100, **params: Any) -> dict[str, str]:
        """Receive ``topic``'s events as ``rpc.event`` notifications on this connection."""
        found = server.topics.get(topic) if isinstance(topic, str) else None
        if found is None:
            raise _invalid(f"no topic {topic!r}; topics: {', '.join(sorted(server.topics))}")
        if type(queue_size) is not int or not 1 <= queue_size <= MAX_QUEUE:
            raise _invalid(f"queue_size must be an integer from 1 to {MAX_QUEUE}")
        if found.producer is None and params:
            raise _invalid(f"topic {topic!r} takes no parameters")
        events = None
        if found.producer is not None:
            try:
                inspect.signature(found.producer).bind(**params)
                # A producer that is a plain function checks its params right here, so a bad
                # one is refused now rather than ending the subscription at its first event.
                events = found.producer(**params)
            except (TypeError, ValueError) as exc:
                raise _invalid(f"topic {topic!r}: {exc}") from None
        sub = current_context().connection.push.subscribe(found, events, queue_size)
        return {"subscription": sub.id, "topic": topic}

    def unsubscribe(subscription: str) -> bool:
        """Stop a subscription of this connection; False if there was none by that id."""
        if type(subscription) is not str:
            raise _invalid(f"subscription must be a string, not {subscription!r}")
        return bool(current_context().connection.push.unsubscribe(subscription))

    def cancel(id: Any) -> bool:
        """Cancel this connection's running call with request id ``id``; False if none runs."""
        if type(id) not in (str, int, float, type(None)):  # not bool: True would match id 1
            raise _invalid(f"id must be a request id (string, number or null), not {id!r}")
        return bool(current_context().connection.cancel(id))

    read = Access.READ
    return {
        "rpc.stats": MethodSpec.build("rpc.stats", stats, access=read),
        "rpc.topics": MethodSpec.build("rpc.topics", topics, access=read),
        "rpc.subscribe": MethodSpec.build("rpc.subscribe", subscribe, access=read),
        "rpc.unsubscribe": MethodSpec.build("rpc.unsubscribe", unsubscribe, access=read),
        "rpc.cancel": MethodSpec.build("rpc.cancel", cancel, access=read, immediate=True),
    }
