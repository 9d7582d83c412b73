"""The requests of one connection, from complete lines to counted answers.

Each read's lines become messages (:mod:`jrpc_unix._wire.messages` picks the JSON parser and
makes each line a request, a batch, or the error answer for a line that is not one); each
request is counted, checked (stopping, access), resolved by the dispatcher, and answered at
once if it will not run, else handed to the :class:`~jrpc_unix._server.schedule.Schedule`,
which starts it in the promised order. Every outcome comes back here (:meth:`Calls.finish`,
:meth:`Calls.reject`) to be counted and handed to its sink: the writer, or its batch. Nothing
here waits: the reader reads on while calls run or wait, so ``rpc.cancel`` (the one immediate
method) and a disconnect are seen whatever the calls do.

The common case, one request to a quick synchronous handler with nothing waiting, is answered
by :meth:`Calls._fast` in one function, beside the general path it mirrors.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import trio

from .._errors import ErrorCode
from .._service.context import ConnectionHandle, inline_slot
from .._service.dispatch import Invocation
from .._service.throttle import Throttle, short
from .._wire.messages import (
    Answer,
    ErrorAnswer,
    LineTooLong,
    Request,
    error_answer,
    parse_json,
    parser_for,
    unparsable,
)
from .execute import Executor, shutting_down
from .loop import TaskNursery
from .outbox import Outbox
from .schedule import Schedule, Sink
from .shared import ServeContext
from .writer import Writer

__all__ = ["Calls"]

_ABSENT: Any = object()  # a member the request does not have
_ID_TYPES = (str, int, float)  # (with None) what an id may be

throttled_log = Throttle(logging.getLogger("jrpc_unix.server"))  # log lines any client can cause


class _Batch:
    """Collects a batch's answers; writes them as one array once every member has answered."""

    __slots__ = ("_deliver", "_parts", "_pending", "_sealed")

    def __init__(self, deliver: Sink) -> None:
        self._deliver = deliver
        self._parts: list[bytes] = []
        self._pending = 0
        self._sealed = False

    def expect(self) -> Sink:
        self._pending += 1
        return self._done

    def _done(self, answer: bytes | None) -> None:
        if answer is not None:
            self._parts.append(answer)
        self._pending -= 1
        self._finish_if_complete()

    def seal(self) -> None:
        self._sealed = True
        self._finish_if_complete()

    def _finish_if_complete(self) -> None:
        if self._sealed and self._pending == 0 and self._parts:
            self._deliver(b"[" + b",".join(self._parts) + b"]")
            self._parts = []


class Calls:
    """Admits, orders and answers the requests of one connection (see the module docstring).

    ``handle`` is the connection as handlers see it; ``changed`` is unparked when a call ends
    or a request leaves the queue; ``settled`` is called whenever nothing runs or waits.
    """

    def __init__(
        self,
        shared: ServeContext,
        handle: ConnectionHandle,
        writer: Writer,
        outbox: Outbox,
        changed: trio.lowlevel.ParkingLot,
        tasks: TaskNursery,
        settled: Callable[[], None],
    ) -> None:
        self._shared = shared  # (its ``stopping`` changes)
        self._handle = handle
        self._level = handle.level
        self._limits = shared.limits
        self._dispatcher = shared.dispatcher
        self._stats = shared.stats
        self._timing = shared.stats.per_method
        self._writer = writer
        self._deliver = writer.deliver
        self._outbox = outbox
        self._slowlog = shared.slowlog
        self._slow_ns = shared.slowlog.threshold_ns
        self._audit = shared.audit
        self._audited = shared.audit.audited if shared.audit is not None else frozenset()
        fast = shared.audit.fast_specs if shared.audit is not None else shared.dispatcher.fast_specs
        self._fast_specs = fast(handle.level)  # (audited methods take the general path)
        self._immediate = shared.dispatcher.immediate
        self._inline = inline_slot()
        executor = Executor(shared, handle)
        self.schedule = Schedule(shared, executor, writer, changed, tasks, settled, self)

    # -- one read's lines --------------------------------------------------------------------

    def handle_lines(self, lines: list[bytes | Any]) -> None:
        """Answer, start or queue each line's requests, in order; never waits."""
        max_batch, max_size = self._limits.max_batch, self._limits.max_message_size
        parse = parser_for(lines)
        queue, writer, limit = self.schedule.queue, self._writer, self._limits.max_pending_output
        fast = self._fast
        for line in lines:
            try:
                obj = parse(line)
            except ValueError as exc:  # not JSON; or too long (then the framing kept no bytes)
                message, size = unparsable(exc, max_size), 0 if isinstance(exc, LineTooLong) else len(line)
            else:
                if type(obj) is dict and not queue and writer.pending <= limit and fast(obj):
                    continue
                message = parse_json(obj, max_batch)
                size = len(line) // len(message.items)  # (a batch's members share its bytes)
            if not message.is_batch:
                self._member(message.items[0], self._deliver, size, message.reason)
                continue
            batch = _Batch(self._deliver)
            for item in message.items:
                self._member(item, batch.expect(), size, message.reason)
            batch.seal()

    def _member(self, item: Request | bytes, sink: Sink, size: int, reason: str) -> None:
        if isinstance(item, bytes):  # an invalid member's answer: now, or in its turn
            if self.schedule.queue:
                self.schedule.wait_answer(sink, size, ErrorAnswer(item, reason))
            else:
                self.reject(sink, ErrorAnswer(item, reason))
        elif (
            self.schedule.queue or self._writer.pending > self._limits.max_pending_output
        ) and item.method not in self._immediate:
            self.schedule.wait(item, sink, size)  # behind what waits already
        else:
            call = self.admit(item, sink)
            if call is not None:
                self.schedule.start(call, sink)

    def _fast(self, obj: dict[str, Any]) -> bool:
        """Answer the common case here: one request to a quick synchronous handler.

        Same answers and statistics as :meth:`admit` -> :meth:`Executor.inline` ->
        :meth:`finish` (the test suite runs both ways), written out in one function: nearly
        every request takes this path, and each call saved shows in the benchmarks. False hands the
        request to the general path: anything unusual, anything that must wait or needs a task.
        """
        try:
            spec = self._fast_specs[obj["method"]]
        except (KeyError, TypeError):  # no method, not one answered here, not even a name
            return False
        # is_valid_request(), for an object with a method this path answers: "jsonrpc" is
        # "2.0", "id" and "params" are optional, and with those two counted, no other member
        rid = obj.get("id", _ABSENT)
        params = obj.get("params", _ABSENT)
        if (
            obj.get("jsonrpc") != "2.0"
            or len(obj) != 2 + (rid is not _ABSENT) + (params is not _ABSENT)
            or (rid is not _ABSENT and rid is not None and type(rid) not in _ID_TYPES)
            or self._shared.stopping
        ):
            return False
        if params is _ABSENT:
            params = None
        elif type(params) is not dict and type(params) is not list:
            return False
        args = spec.bind(params)
        if args is None:
            return False  # (params that do not bind, or of the wrong types: the general path answers)
        stats = self._stats
        notification = rid is _ABSENT
        if notification:
            if self.schedule.in_flight:  # a barrier: it must wait for the calls before it
                return False
            stats.notifications += 1
            rid = None
        else:
            stats.calls += 1
        name = spec.name
        start = time.perf_counter_ns() if self._timing else 0
        inline = self._inline  # what current_context() reads; see Executor.inline
        inline.connection, inline.method, inline.request_id = self._handle, name, rid
        inline.notification = notification
        try:
            value = spec.func(**args) if type(args) is dict else spec.func(*args)
        except Exception as exc:
            answer: Answer = self._dispatcher.answer_exception(name, rid, notification, exc)
        else:
            answer = self._dispatcher.answer(name, rid, notification, value)
        finally:
            inline.connection = None
        # finish(), less what cannot happen here: a reason (no refusal), a known=False
        m = stats.methods.get(name) or stats.method(name, True)  # (no call once it exists)
        if notification:
            m.notifications += 1
        else:
            m.calls += 1
            self._outbox.before_answer()
        if start:
            elapsed = time.perf_counter_ns() - start
            m.latency.add(elapsed)
            if elapsed > self._slow_ns:
                self._slowlog.add(name, elapsed, self._handle.peer, self._handle.id)
        if answer is None:
            return True
        if type(answer) is bytes:
            self._deliver(answer)
        else:  # an ErrorAnswer
            m.errors += 1
            stats.errors += 1
            self._deliver(answer.line)  # type: ignore[union-attr]
        return True

    # -- the general path (the schedule's Outcomes) -------------------------------------------

    def admit(self, req: Request, sink: Sink) -> Invocation | None:
        """Count the request; answer at once what will not run; the Invocation to run otherwise."""
        stats = self._stats
        if req.is_notification:
            stats.notifications += 1
        else:
            stats.calls += 1
        if self._shared.stopping:
            self.reject(sink, shutting_down(req))
            return None
        needed = self._dispatcher.access_needed(req.method)  # before params: -32602 would tell of them
        if needed is not None and needed > self._level:
            data = f"{req.method} needs {needed.name.lower()} access; you have {self._level.name.lower()}"
            peer = self._handle.peer
            throttled_log.warning(
                "access_denied", "denied %s to %s: %s", short(req.method), peer, short(data)
            )
            if self._audit is not None:
                self._audit.denied(req.method, req.params, peer, self._handle.id, data)
            code = ErrorCode.ACCESS_DENIED
            self.reject(
                sink, error_answer(req.id, req.is_notification, code, data=data, reason="access_denied")
            )
            return None
        call = self._dispatcher.prepare(req)
        if isinstance(call, ErrorAnswer):  # no such method, params that do not bind
            self._count(req, sink, call, known=self._dispatcher.knows(req.method))
            return None
        if call.spec.immediate:
            self._count(req, sink, self.schedule.executor.inline(call))
            return None
        return call

    def finish(self, call: Invocation, sink: Sink, answer: Answer, start: int) -> None:
        self._count(call.request, sink, answer, start)

    def _count(self, req: Request, sink: Sink, answer: Answer, start: int = 0, *, known: bool = True) -> None:
        """Count the outcome, put progress reports ahead of the answer, hand the answer on."""
        stats = self._stats
        m = stats.method(req.method, known)
        if req.is_notification:
            m.notifications += 1
        else:
            m.calls += 1
            self._outbox.before_answer()
        elapsed = 0
        if start:
            elapsed = time.perf_counter_ns() - start
            m.latency.add(elapsed)
            if elapsed > self._slow_ns:
                self._slowlog.add(req.method, elapsed, self._handle.peer, self._handle.id)
        if req.method in self._audited:
            assert self._audit is not None
            self._audit.call(req, answer, elapsed, self._handle.peer, self._handle.id)
        if isinstance(answer, ErrorAnswer):
            m.errors += 1
            stats.errors += 1
            if answer.reason:  # cancelled, timed out
                stats.rejected_requests[answer.reason] += 1
            sink(answer.line)
        else:
            sink(answer)

    def reject(self, sink: Sink, answer: ErrorAnswer) -> None:
        """Count a request that will not run under its reason, and hand its answer on."""
        self._stats.rejected_requests[answer.reason] += 1
        self._stats.errors += 1
        sink(answer.line)
