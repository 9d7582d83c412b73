"""Running one admitted call: inline, or in a task with its context, timeout and thread.

How a handler runs is decided here, by its :class:`RunMode` alone: a plain function inline on
the event loop's thread, ``blocking=True`` in a worker thread, ``async def`` awaited through the
server's :data:`~.shared.AwaitHandler` -- in trio, or on the asyncio loop trio is a guest of
(:mod:`jrpc_unix.aio`) -- except the server's own ``rpc.*`` methods, trio code under every host.

A call that may wait is registered in the connection's :class:`CancelRegistry` under its request
id with a cancel scope, so ``rpc.cancel``, a disconnect (all but run-to-completion calls and
notifications) and the end of the server's grace can stop it. A cancelled call still answers:
-32005, or -32002 at shutdown.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import trio

from .._errors import ErrorCode
from .._service.context import ConnectionHandle, RequestContext, _current, inline_slot
from .._service.dispatch import Invocation
from .._service.methods import RunMode
from .._service.throttle import Throttle
from .._wire.messages import Answer, ErrorAnswer, Request, error_answer
from .shared import ServeContext, await_in_trio

__all__ = ["CancelRegistry", "Executor", "RunningCall", "cancelled", "shutting_down"]

log = logging.getLogger("jrpc_unix.server")
throttled_log = Throttle(log)  # log lines any client can cause

_NOTIFICATION = object()  # the key of running notifications: they have no id to cancel by


class RunningCall:
    """A call that runs where it can be cancelled: its scope, and whether it outlives its
    caller's disconnect (run-to-completion calls and notifications do)."""

    __slots__ = ("key", "method", "progressed", "scope", "started", "survives_disconnect")

    def __init__(self, key: Any, survives_disconnect: bool, method: str = "") -> None:
        self.key = key
        self.scope = trio.CancelScope()
        self.survives_disconnect = survives_disconnect
        self.method = method  # for rpc.inflight, as are the times (time.monotonic())
        self.started = time.monotonic()
        self.progressed: float | None = None


class CancelRegistry:
    """The running calls of one connection by request id: what ``rpc.cancel``, a disconnect
    and the end of the grace find. Several calls may share an id (ids are the client's)."""

    __slots__ = ("_running",)

    def __init__(self) -> None:
        self._running: dict[Any, list[RunningCall]] = {}

    def __bool__(self) -> bool:
        return bool(self._running)

    def add(self, invocation: Invocation) -> RunningCall:
        """Register ``invocation`` (from now on an ``rpc.cancel`` right behind it finds it)."""
        req = invocation.request
        # Notifications are not rpc.cancel's to find (their key is no id) and survive a
        # disconnect; only the shutdown deadline cancels them.
        key = _NOTIFICATION if req.is_notification else req.id
        running = RunningCall(key, invocation.spec.run_to_completion or req.is_notification, req.method)
        self._running.setdefault(key, []).append(running)
        return running

    def remove(self, running: RunningCall) -> None:
        calls = self._running[running.key]
        calls.remove(running)
        if not calls:
            del self._running[running.key]

    def __iter__(self) -> Iterator[RunningCall]:
        for calls in list(self._running.values()):
            yield from calls

    def touch(self, request_id: Any) -> None:
        """The call(s) with this id reported progress (from any thread: one float stored)."""
        for running in self._running.get(request_id, ()):
            running.progressed = time.monotonic()

    def cancel(self, request_id: Any) -> bool:
        """Cancel the running call(s) with this request id; True if there was one."""
        calls = self._running.get(request_id, [])
        for running in calls:
            running.scope.cancel()
        return bool(calls)

    def cancel_all(self, *, everything: bool) -> None:
        """Cancel what runs: on a disconnect all but what survives it; at the deadline all."""
        for calls in self._running.values():
            for running in calls:
                if everything or not running.survives_disconnect:
                    running.scope.cancel()


class Executor:
    """Runs the calls of one connection (``handle`` is what their context calls it)."""

    def __init__(self, shared: ServeContext, handle: ConnectionHandle) -> None:
        self._handle = handle
        self._server = shared.server
        self._dispatcher = shared.dispatcher
        self._limits = shared.limits
        self._workers = shared.workers
        self._await_handler = shared.await_handler
        self._thread_slots: trio.CapacityLimiter | None = None  # made at the first blocking call
        self._inline = inline_slot()
        self.running = CancelRegistry()
        self.shutdown = False  # the server's grace is over: cancelled calls say so

    def inline(self, invocation: Invocation) -> Answer:
        """Run a synchronous handler right here; nothing else runs until it returns.

        So the server only points its thread's inline slot at the request rather than setting
        a contextvar; :func:`current_context` builds the context if the handler asks.
        """
        spec, req = invocation.spec, invocation.request
        inline = self._inline
        inline.connection, inline.method, inline.request_id = self._handle, req.method, req.id
        inline.notification = req.is_notification
        try:
            value = spec.func(*invocation.args, **invocation.kwargs)
        except Exception as exc:
            return self._dispatcher.answer_exception(req.method, req.id, req.is_notification, exc)
        finally:
            inline.connection = None
        return self._dispatcher.answer(req.method, req.id, req.is_notification, value)

    async def run(self, invocation: Invocation, running: RunningCall | None = None) -> Answer:
        """Run ``invocation`` where rpc.cancel, a disconnect and the shutdown deadline can cancel
        it (``running``: its entry, if registered already)."""
        if running is None:
            running = self.running.add(invocation)
        try:
            with running.scope:
                return await self._execute(invocation)
        finally:
            self.running.remove(running)
        req = invocation.request  # cancelled:
        if self.shutdown:
            data = f"{req.method} was cancelled: the server is shutting down"
            return error_answer(
                req.id, req.is_notification, ErrorCode.SHUTTING_DOWN, data=data, reason="shutting_down"
            )
        return cancelled(req)

    async def _execute(self, invocation: Invocation) -> Answer:
        spec = invocation.spec
        if spec.mode is RunMode.SYNC:  # cannot be interrupted, so no timeout applies
            return self.inline(invocation)
        timeout = spec.timeout if spec.timeout is not None else self._limits.handler_timeout
        req, handle = invocation.request, self._handle
        context = RequestContext(req.method, req.id, req.is_notification, handle.peer, self._server, handle)
        args, kwargs = invocation.args, invocation.kwargs
        token = _current.set(context)
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
                if spec.mode is RunMode.ASYNC:
                    # The server's own rpc.* methods are trio code under every host.
                    wait = await_in_trio if spec.name.startswith("rpc.") else self._await_handler
                    value = await wait(spec.func, args, kwargs)
                else:
                    value = await self._in_thread(functools.partial(spec.func, *args, **kwargs))
        except Exception as exc:
            return self._dispatcher.answer_exception(req.method, req.id, req.is_notification, exc)
        finally:
            _current.reset(token)
        if scope.cancelled_caught:
            data = f"{req.method} ran longer than {timeout} s and was cancelled"
            throttled_log.warning("timeout", "%s", data)
            return error_answer(req.id, req.is_notification, ErrorCode.TIMEOUT, data=data, reason="timeout")
        return self._dispatcher.answer(req.method, req.id, req.is_notification, value)

    async def _in_thread(self, func: functools.partial[Any]) -> Any:
        slots = self._thread_slots
        if slots is None:
            slots = self._thread_slots = trio.CapacityLimiter(self._workers.per_connection)
        return await self._workers.run(func, slots)


def cancelled(req: Request) -> ErrorAnswer:
    """The answer to a call ``rpc.cancel`` (or a disconnect) stopped, running or waiting."""
    data = f"{req.method} was cancelled"
    return error_answer(req.id, req.is_notification, ErrorCode.CANCELLED, data=data, reason="cancelled")


def shutting_down(req: Request, reason: str = "shutting_down") -> ErrorAnswer:
    """The answer to a request that will not run because the server stops (or its caller left)."""
    return error_answer(req.id, req.is_notification, ErrorCode.SHUTTING_DOWN, reason=reason)
