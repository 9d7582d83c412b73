"""Who is calling, and about what: the context a handler can read while it runs.

Handlers keep the plain signature of their JSON-RPC method; they reach the context through
:func:`current_context` instead of an injected first argument. Async and blocking handlers get it
from a contextvar (it follows the call into ``await`` and into the worker thread). A quick
synchronous handler runs inline on the event loop, where nothing else runs until it returns: the
server then only points its thread's :class:`_Inline` slot at the request, and the context is
built if asked for, so the common call pays nothing for a context it does not use.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol

from .access import Access, Peer
from .limits import Limits
from .stats import ServerStats

__all__ = ["ConnectionHandle", "RequestContext", "ServerHandle", "current_context"]


class ServerHandle(Protocol):
    """What a handler may use of the :class:`jrpc_unix.Server` answering it."""

    @property
    def stats(self) -> ServerStats: ...
    @property
    def limits(self) -> Limits: ...
    @property
    def stopping(self) -> bool: ...
    def publish(self, topic: str, data: Any) -> None: ...
    def stop(self) -> None: ...


class ConnectionHandle(Protocol):
    """What a handler may do with the connection its request came on (``rpc.*`` methods do)."""

    @property
    def id(self) -> int:
        """The server's number for it (``rpc.connections``)."""
        ...

    @property
    def peer(self) -> Peer | None: ...
    @property
    def level(self) -> Access: ...
    @property
    def server(self) -> ServerHandle: ...
    @property
    def subscription_count(self) -> int: ...
    @property
    def framing(self) -> str | None:
        """How the client frames its messages ("newline", "unixsock", "lsp", "json-seq", or
        "unknown"); None until its first bytes came (specs/protocol.md, "Framings")."""
        ...

    def subscribe(
        self, topic: str, events: AsyncIterator[Any] | None, queue_size: int, backlog: Sequence[bytes] = ()
    ) -> str:
        """Deliver ``topic``'s events here (``events``: a produced topic's), after ``backlog``
        (kept events replayed); the subscription id."""
        ...

    def unsubscribe(self, subscription: str) -> bool: ...
    def cancel(self, request_id: Any) -> bool: ...
    def report_progress(
        self, request_id: Any, done: float, total: float | None, message: str | None
    ) -> None: ...


@dataclass(slots=True)
class RequestContext:
    """The request being handled; ``request_id`` is None for a notification."""

    method: str
    request_id: Any
    is_notification: bool
    peer: Peer | None
    #: The :class:`jrpc_unix.Server` answering (for its stats, or to publish or stop).
    server: ServerHandle
    #: The connection the request came on (the server's own ``rpc.*`` methods use it).
    connection: ConnectionHandle

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Report progress of this call to its caller, if the caller subscribed to ``progress``.

        Never blocks, and works from a blocking handler's worker thread too. The caller gets
        every report queued before the call's answer, ahead of it; a slow caller loses the
        oldest reports (the subscription's slow-consumer policy), never the answer.
        """
        if not self.is_notification:
            self.connection.report_progress(self.request_id, done, total, message)


_current: ContextVar[RequestContext] = ContextVar("jrpc_unix_request_context")


class _Inline:
    """The request an inline synchronous handler is answering, on one event loop's thread."""

    __slots__ = ("connection", "context", "method", "notification", "request_id")

    def __init__(self) -> None:
        self.connection: ConnectionHandle | None = None  # None: no inline handler is running
        self.method = ""
        self.request_id: Any = None
        self.notification = False
        #: The last context current_context() made here, reused while it describes the
        #: request (a burst of notifications to one method shares one; a context is never
        #: changed once made).
        self.context: RequestContext | None = None


# One slot per event-loop thread (servers in several threads must not see each other's
# requests). A plain dict, not threading.local: the hot path writes to the slot its
# connection fetched once, at plain-attribute speed (a threading.local costs 5x more).
_inline_slots: dict[int, _Inline] = {}


def inline_slot() -> _Inline:
    """The slot of the calling thread (an event loop's), created on first use."""
    ident = threading.get_ident()
    slot = _inline_slots.get(ident)
    if slot is None:
        slot = _inline_slots[ident] = _Inline()
    return slot


_new = object.__new__


def current_context() -> RequestContext:
    """The context of the request this handler is answering.

    Raises LookupError outside a handler.
    """
    inline = _inline_slots.get(threading.get_ident())
    if inline is not None and (conn := inline.connection) is not None:  # an inline handler's
        ctx = inline.context
        if (
            ctx is not None
            and ctx.request_id is inline.request_id
            and ctx.method is inline.method
            and ctx.connection is conn
            and ctx.is_notification is inline.notification
        ):
            return ctx
        # Filled in slot by slot: calling the class (dataclass __init__ through type.__call__)
        # costs twice as much on Python 3.11, and this runs on every call that asks.
        ctx = inline.context = _new(RequestContext)
        ctx.method = inline.method
        ctx.request_id = inline.request_id
        ctx.is_notification = inline.notification
        ctx.peer = conn.peer
        ctx.server = conn.server
        ctx.connection = conn
        return ctx
    ctx = _current.get(None)  # a task's or a worker thread's (not try/except: raising costs more)
    if ctx is not None:
        return ctx
    raise LookupError("current_context() called outside a jrpc-unix request handler")
