"""The requests of one connection, from complete lines to answers.

Each line is parsed and split into its requests (a batch's answers are collected into one
array); each request is counted, checked (method, params, access, stopping) and answered at once
if it will not run, else handed to the :class:`~jrpc_unix._server.schedule.Schedule`, which starts it
in the promised order. Nothing here waits: the reader reads on while calls run or wait, so
``rpc.cancel`` (the one immediate method) and a disconnect are seen whatever the calls do.

The common case, one request to a quick synchronous handler with nothing waiting, is answered
by :meth:`Calls._fast` in one function.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .._errors import ErrorCode
from .._service.context import inline_slot
from .._service.dispatch import Call
from .._service.throttle import short
from .._wire.fastjson import loads, parser_for
from .._wire.framing import TOO_LONG
from .._wire.messages import (
    FAILED_NOTIFICATION,
    Request,
    encode_error,
    is_valid_request,
    parse_json,
    parse_line,
)
from .execute import noisy
from .schedule import Schedule, Sink, shutting_down

if TYPE_CHECKING:
    from .connection import Connection

__all__ = ["Calls"]

_ERROR_PREFIX = b'{"jsonrpc":"2.0","error"'


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
        if answer:
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
    """Admits, orders and answers the requests of one connection (see the module docstring)."""

    def __init__(self, conn: Connection) -> None:
        server = conn.server
        self._conn = conn
        self._server = server
        self._limits = server.limits
        self._dispatcher = server.dispatcher
        self._stats = server.stats
        self._timing = server.stats.per_method
        self._writer = conn.writer
        self._deliver = conn.writer.deliver
        self._push = conn.push
        self._fast_specs = server.dispatcher.fast_specs(conn.level)
        self._immediate = server.dispatcher.immediate
        self.schedule = Schedule(conn, self._admit, self._answered, self._reject)
        self._inline = inline_slot()

    # -- one read's lines --------------------------------------------------------------------

    def handle_lines(self, lines: list[bytes | Any]) -> None:
        """Answer, start or queue each line's requests, in order; never waits."""
        max_batch = self._limits.max_batch
        try:  # "\n" cannot be part of a digit run, so the joined lines are checked as a whole
            parse = parser_for(b"\n".join(lines))
        except TypeError:  # a TOO_LONG marker among them: check line by line
            parse = loads
        queue, writer, limit = self.schedule.queue, self._writer, self._limits.max_pending_output
        for line in lines:
            if line is TOO_LONG:
                data = f"message exceeds the limit of {self._limits.max_message_size} bytes"
                answer = encode_error(None, ErrorCode.REQUEST_TOO_LARGE, data=data)
                self._answer("too_large", self._deliver, answer, 0)
                continue
            try:
                obj = parse(line)
            except ValueError:
                message = parse_line(line, max_batch)  # the parse error answer
            else:
                if type(obj) is dict and not queue and writer.pending <= limit and self._fast(obj):
                    continue
                message = parse_json(obj, max_batch)
            size = len(line) // max(1, len(message.items))
            if not message.is_batch:
                self._member(message.items[0], self._deliver, size)
                continue
            batch = _Batch(self._deliver)
            for item in message.items:
                self._member(item, batch.expect(), size)
            batch.seal()

    def _member(self, item: Request | bytes, sink: Sink, size: int) -> None:
        if isinstance(item, bytes):
            self._answer("parse_error" if b'"code":-32700' in item else "invalid_request", sink, item, size)
        elif (
            self.schedule.queue or self._writer.pending > self._limits.max_pending_output
        ) and item.method not in self._immediate:
            self.schedule.wait(item, sink, size)  # behind what waits already
        else:
            call = self._admit(item, sink)
            if call is not None:
                self.schedule.start(call, sink)

    def _fast(self, obj: dict[str, Any]) -> bool:
        """Answer the common case here: one request to a quick synchronous handler.

        Same answers and statistics as :meth:`_admit` -> :meth:`Executor.inline` ->
        :meth:`_finish` (the test suite runs both ways), written out in one function: nearly
        every request takes this path, and each call saved is ~3 % of it. False hands the
        request to the general path: anything unusual, anything that must wait or needs a task.
        """
        method = obj.get("method")
        spec = self._fast_specs.get(method) if type(method) is str else None
        if spec is None or self._server.stopping or not is_valid_request(obj):
            return False
        params = obj.get("params")
        if not spec.shape.accepts(params):
            return False
        stats = self._stats
        notification = "id" not in obj
        if notification:
            if self.schedule.in_flight:  # a barrier: it must wait for the calls before it
                return False
            stats.notifications += 1
        else:
            stats.calls += 1
        name, rid = spec.name, obj.get("id")
        start = time.perf_counter_ns() if self._timing else 0
        inline = self._inline  # what current_context() reads; see Executor.inline
        inline.connection, inline.method, inline.request_id = self._conn, name, rid
        inline.notification = notification
        try:
            if type(params) is dict:
                value = spec.func(**params)
            else:
                value = spec.func(*params) if params else spec.func()
        except Exception as exc:
            answer = self._dispatcher.encode_exception(name, rid, notification, exc)
        else:
            answer = self._dispatcher.encode_value(name, rid, notification, value)
        finally:
            inline.connection = None
        # _finish, with the deliver() of a successful notification's None left out
        m = stats.methods.get(name) or stats.method(name, True)  # (no call once it exists)
        if notification:
            m.notifications += 1
        else:
            m.calls += 1
            self._push.before_answer()
        if start:
            m.latency.add(time.perf_counter_ns() - start)
        if answer is not None:
            if not answer or answer.startswith(_ERROR_PREFIX):
                m.errors += 1
                stats.errors += 1
            self._deliver(answer)
        return True

    # -- admission and start ----------------------------------------------------------------

    def _admit(self, req: Request, sink: Sink) -> Call | None:
        """Count the request; answer at once what will not run; the Call to run otherwise."""
        stats = self._stats
        if req.is_notification:
            stats.notifications += 1
        else:
            stats.calls += 1
        if self._server.stopping:
            answer = FAILED_NOTIFICATION if req.is_notification else shutting_down(req)
            self._reject("shutting_down", sink, answer)
            return None
        needed = self._dispatcher.access_needed(req.method)  # before params: -32602 would tell of them
        if needed is not None and needed > self._conn.level:
            need, have = needed.name.lower(), self._conn.level.name.lower()
            data = f"{req.method} needs {need} access; you have {have}"
            peer = self._conn.peer
            noisy.warning("access_denied", "denied %s to %s: %s", short(req.method), peer, short(data))
            denied = (
                FAILED_NOTIFICATION
                if req.is_notification
                else encode_error(req.id, ErrorCode.ACCESS_DENIED, data=data)
            )
            self._reject("access_denied", sink, denied)
            return None
        call = self._dispatcher.prepare(req)
        if type(call) is not Call:
            known = self._dispatcher.knows(req.method)
            self._finish(req.method, req.is_notification, known, sink, call, 0)  # type: ignore[arg-type]
            return None
        spec = call.spec
        if spec.immediate:
            self._finish(req.method, req.is_notification, True, sink, self.schedule.executor.inline(call), 0)
            return None
        return call

    def _answered(self, call: Call, sink: Sink, answer: bytes | None, start: int) -> None:
        req = call.request
        self._finish(req.method, req.is_notification, True, sink, answer, start)

    def _finish(
        self, method: str, notification: bool, known: bool, sink: Sink, answer: bytes | None, start: int
    ) -> None:
        """Count the outcome, put progress reports ahead of the answer, hand the answer on."""
        m = self._stats.method(method, known)
        if notification:
            m.notifications += 1
        else:
            m.calls += 1
            self._push.before_answer()
        if start:
            m.latency.add(time.perf_counter_ns() - start)
        if answer is not None and (not answer or answer.startswith(_ERROR_PREFIX)):
            m.errors += 1
            self._stats.errors += 1
        sink(answer)

    def _reject(self, reason: str, sink: Sink, answer: bytes | None) -> None:
        self._stats.rejected_requests[reason] += 1
        if answer is not None:
            self._stats.errors += 1
        sink(answer)

    def _answer(self, reason: str, sink: Sink, answer: bytes, size: int) -> None:
        """An invalid line's answer: now, or in its turn when requests wait (serial order)."""
        if self.schedule.queue:
            self.schedule.wait_answer(sink, size, answer, reason)
        else:
            self._reject(reason, sink, answer)
