"""Running one admitted call: inline, or in a task with its context, timeout and thread.

A call that may wait is registered under its request id with a cancel scope, so ``rpc.cancel``,
a disconnect (all but run-to-completion calls and notifications) and the end of the server's
grace can stop it. A cancelled call still answers: -32005, or -32002 at shutdown.
"""

from __future__ import annotations

import functools
import logging
import math
from typing import TYPE_CHECKING, Any

import trio

from .._errors import ErrorCode
from .._service.context import RequestContext, _current, inline_slot
from .._service.dispatch import Call
from .._service.methods import RunMode
from .._service.throttle import Throttle
from .._wire.messages import FAILED_NOTIFICATION, encode_error

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Entry", "Executor"]

log = logging.getLogger("jrpc_unix.server")
noisy = Throttle(log)  # log lines any client can cause

_NOTIFICATION = object()  # the key of running notifications, which have no id
Entry = tuple[trio.CancelScope, bool]  # a running call's scope; True: it survives a disconnect


class Executor:
    """Runs the calls of one connection and keeps their cancel scopes."""

    def __init__(self, conn: Connection) -> None:
        server = conn.server
        self._conn = conn
        self._dispatcher = server.dispatcher
        self._limits = server.limits
        self._stats = server.stats
        self._workers = server.workers
        self._thread_slots: trio.CapacityLimiter | None = None  # made at the first blocking call
        self._inline = inline_slot()
        self._running: dict[Any, list[Entry]] = {}
        self.shutdown = False  # the server's grace is over: cancelled calls say so

    def inline(self, call: Call) -> bytes | None:
        """Run a synchronous handler right here; nothing else runs until it returns.

        So the server only points its thread's inline slot at the request rather than setting
        a contextvar; :func:`current_context` builds the context if the handler asks.
        """
        spec, req = call.spec, call.request
        inline = self._inline
        inline.connection, inline.method, inline.request_id = self._conn, spec.name, req.id
        inline.notification = req.is_notification
        try:
            value = spec.func(*call.args, **call.kwargs)
        except Exception as exc:
            return self._dispatcher.encode_exception(spec.name, req.id, req.is_notification, exc)
        finally:
            inline.connection = None
        return self._dispatcher.encode_value(spec.name, req.id, req.is_notification, value)

    def register(self, call: Call) -> Entry:
        """A cancel scope for ``call``, findable by its id from now on (rpc.cancel right behind)."""
        req = call.request
        # Notifications are not rpc.cancel's to find (their key is no id) and survive a
        # disconnect; only the shutdown deadline cancels them.
        key = _NOTIFICATION if req.is_notification else req.id
        entry = (trio.CancelScope(), call.spec.run_to_completion or req.is_notification)
        self._running.setdefault(key, []).append(entry)
        return entry

    async def run(self, call: Call, entry: Entry | None = None) -> bytes | None:
        """Run ``call`` where rpc.cancel, a disconnect and the shutdown deadline can cancel it."""
        req = call.request
        if entry is None:
            entry = self.register(call)
        scope = entry[0]
        try:
            with scope:
                return await self._execute(call)
        finally:
            key = _NOTIFICATION if req.is_notification else req.id
            scopes = self._running[key]
            scopes.remove(entry)
            if not scopes:
                del self._running[key]
            if scope.cancelled_caught:
                reason = "shutting_down" if self.shutdown else "cancelled"
                self._stats.rejected_requests[reason] += 1
        if req.is_notification:
            return FAILED_NOTIFICATION
        if self.shutdown:
            data = f"{req.method} was cancelled: the server is shutting down"
            return encode_error(req.id, ErrorCode.SHUTTING_DOWN, data=data)
        return encode_error(req.id, ErrorCode.CANCELLED, data=f"{req.method} was cancelled")

    async def _execute(self, call: Call) -> bytes | None:
        spec = call.spec
        if spec.mode is RunMode.SYNC:  # cannot be interrupted, so no timeout applies
            return self.inline(call)
        timeout = spec.timeout if spec.timeout is not None else self._limits.handler_timeout
        req, conn = call.request, self._conn
        context = RequestContext(req.method, req.id, req.is_notification, conn.peer, conn.server, conn)
        token = _current.set(context)
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
                if spec.mode is RunMode.ASYNC:
                    value = await spec.func(*call.args, **call.kwargs)
                else:
                    value = await self._in_thread(functools.partial(spec.func, *call.args, **call.kwargs))
        except Exception as exc:
            return self._dispatcher.answer_exception(call, exc)
        finally:
            _current.reset(token)
        if scope.cancelled_caught:
            data = f"{req.method} ran longer than {timeout} s and was cancelled"
            noisy.warning("timeout", "%s", data)
            self._stats.rejected_requests["timeout"] += 1
            return (
                FAILED_NOTIFICATION
                if req.is_notification
                else encode_error(req.id, ErrorCode.TIMEOUT, data=data)
            )
        return self._dispatcher.answer(call, value)

    async def _in_thread(self, func: functools.partial[Any]) -> Any:
        slots = self._thread_slots
        if slots is None:
            slots = self._thread_slots = trio.CapacityLimiter(self._workers.per_connection)
        return await self._workers.run(func, slots)

    def cancel(self, request_id: Any) -> bool:
        """Cancel the running call(s) with this request id; True if there was one."""
        scopes = self._running.get(request_id, [])
        for scope, _ in scopes:
            scope.cancel()
        return bool(scopes)

    def cancel_running(self, *, everything: bool) -> None:
        """Cancel what runs: on a disconnect all but what survives it; at the deadline all."""
        for scopes in self._running.values():
            for scope, survives in scopes:
                if everything or not survives:
                    scope.cancel()

    @property
    def busy(self) -> bool:
        return bool(self._running)
