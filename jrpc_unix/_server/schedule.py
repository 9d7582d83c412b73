"""When the calls of one connection start: the in-flight bound, barriers, the waiting queue.

Ordering (specs/protocol.md §4): calls may run concurrently, up to ``max_in_flight``, and answer
out of order. A notification is a barrier: it starts once everything received before it has
finished, and what follows waits for it. ``serial`` mode makes every message a barrier.

Nothing here makes the reader wait. A call that may start now starts at once: inline if it is
synchronous, else in a task (counted in flight). What must wait (a barrier behind running calls,
a call beyond ``max_in_flight``, anything while ``max_pending_output`` bytes of answers are
unsent) joins the queue, and so does everything received after it, in order; one task starts
each as it may, and runs an async barrier itself while it stays at the head. The reader pauses
only while the queue is :attr:`Schedule.full`.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from typing import Any, Protocol

import trio

from .._service.dispatch import Invocation
from .._service.methods import RunMode
from .._wire.messages import Answer, ErrorAnswer, Request
from .execute import Executor, RunningCall, cancelled, shutting_down
from .loop import TaskNursery
from .shared import ServeContext
from .writer import Writer

__all__ = ["Schedule", "Sink"]

#: Where a request's answer line goes: the writer, or its batch (None: nothing to send).
Sink = Callable[[bytes | None], None]


class Outcomes(Protocol):
    """Where the schedule hands requests and answers back (:class:`~jrpc_unix._server.calls.Calls`)."""

    def admit(self, req: Request, sink: Sink) -> Invocation | None:
        """Count a request and answer it if it will not run; else the Invocation to run."""

    def finish(self, call: Invocation, sink: Sink, answer: Answer, start: int) -> None:
        """Count a finished call's outcome and hand its answer to the sink."""

    def reject(self, sink: Sink, answer: ErrorAnswer) -> None:
        """Count a request refused and hand its answer to the sink."""


class _Waiting:
    """A request in the queue (admitted once it reaches the head), or an invalid line's answer."""

    __slots__ = ("answer", "call", "req", "sink", "size")

    def __init__(
        self, sink: Sink, size: int, req: Request | None = None, answer: ErrorAnswer | None = None
    ) -> None:
        self.sink = sink
        self.size = size  # bytes of the line it came in (a batch's members share them)
        self.req = req  # None: an invalid line, answered ``answer``
        self.call: Invocation | None = None
        self.answer = answer


class Schedule:
    """Starts the admitted calls of one connection in the promised order.

    ``settled`` is called whenever nothing runs or waits any more.
    """

    __slots__ = (
        "_changed", "_head_running", "_limits", "_outcomes", "_queue_task", "_queued_bytes", "_serial",
        "_settled", "_stats", "_survivors", "_tasks", "_timing", "_writer", "executor", "in_flight", "queue",
    )  # fmt: skip

    def __init__(
        self,
        shared: ServeContext,
        executor: Executor,
        writer: Writer,
        changed: trio.lowlevel.ParkingLot,
        tasks: TaskNursery,
        settled: Callable[[], None],
        outcomes: Outcomes,
    ) -> None:
        self._limits = shared.limits
        self._stats = shared.stats
        self._timing = shared.stats.per_method
        self._serial = shared.serial
        self._survivors = shared.dispatcher.run_to_completion
        self._writer = writer
        self._changed = changed  # unparked when a call ends or a request leaves the queue
        self._tasks = tasks
        self._settled = settled
        self._outcomes = outcomes
        self.executor = executor
        self.in_flight = 0
        #: What waits, in order. Non-empty: everything received goes here (but rpc.cancel).
        self.queue: collections.deque[_Waiting] = collections.deque()
        self._queued_bytes = 0
        self._queue_task = False  # the task that starts waiting requests is running
        self._head_running = False  # the queue's head is a barrier that runs now

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing waits."""
        return not self.in_flight and not self.queue

    @property
    def full(self) -> bool:
        """So many requests wait that the reader pauses."""
        limits = self._limits
        return len(self.queue) >= limits.max_queued_requests or self._queued_bytes >= limits.max_queued_bytes

    def start(self, call: Invocation, sink: Sink) -> None:
        """Start an admitted call now, or queue it when it must wait."""
        if self._may_start(call):
            self._launch(call, sink)
        else:
            waiting = _Waiting(sink, 0, call.request)
            waiting.call = call
            self._enqueue(waiting)

    def wait(self, req: Request, sink: Sink, size: int) -> None:
        """Queue a request behind those that wait already (admitted when its turn comes)."""
        self._enqueue(_Waiting(sink, size, req))

    def wait_answer(self, sink: Sink, size: int, answer: ErrorAnswer) -> None:
        """Queue an invalid line's answer, to keep its place (serial mode answers in order)."""
        self._enqueue(_Waiting(sink, size, answer=answer))

    def _is_barrier(self, call: Invocation) -> bool:
        return call.request.is_notification or self._serial

    def _may_start(self, call: Invocation) -> bool:
        if self._writer.pending > self._limits.max_pending_output:
            return False
        if self._is_barrier(call):
            return not self.in_flight and call.spec.mode is RunMode.SYNC  # else the queue runs it
        return call.spec.mode is RunMode.SYNC or self.in_flight < self._limits.max_in_flight

    def _launch(self, call: Invocation, sink: Sink) -> None:
        """Start a call that may start: inline, or in a task (counted in flight)."""
        start = time.perf_counter_ns() if self._timing else 0
        if call.spec.mode is RunMode.SYNC:
            self._outcomes.finish(call, sink, self.executor.inline(call), start)
            return
        self.in_flight += 1
        self._stats.in_flight += 1
        running = self.executor.running.add(call)  # now, so an rpc.cancel right behind finds it
        self._tasks.start_soon(self._run_task, call, sink, running, start)

    async def _run_task(self, call: Invocation, sink: Sink, running: RunningCall, start: int) -> None:
        try:
            self._outcomes.finish(call, sink, await self.executor.run(call, running), start)
        finally:
            self.in_flight -= 1
            self._stats.in_flight -= 1
            self._changed.unpark_all()
            if self.idle:
                self._settled()
        await self._writer.flush()

    # -- the queue ---------------------------------------------------------------------------

    def _enqueue(self, waiting: _Waiting) -> None:
        self.queue.append(waiting)
        self._queued_bytes += waiting.size
        if not self._queue_task:
            self._queue_task = True
            self._tasks.start_soon(self._run_queue)

    def _pop(self) -> None:
        self._queued_bytes -= self.queue.popleft().size
        self._changed.unpark_all()  # room for the reader

    def _blocked(self, waiting: _Waiting) -> bool:
        """Must the queue's head wait (for answers to drain, for calls to finish)?"""
        if self._writer.pending > self._limits.max_pending_output:
            return True
        call = waiting.call
        if call is None:
            return False  # to be admitted, or an invalid line's answer
        if self._is_barrier(call):
            return self.in_flight > 0
        return call.spec.mode is not RunMode.SYNC and self.in_flight >= self._limits.max_in_flight

    async def _run_queue(self) -> None:
        """Start the waiting requests in order, each once it may; end when none is left."""
        queue, writer = self.queue, self._writer
        try:
            while True:
                while queue:
                    waiting = queue[0]
                    if self._blocked(waiting):
                        if writer.unsent and not writer.writing:
                            await writer.flush()  # answers must drain first: send them
                        else:
                            await self._changed.park()
                        continue
                    call = waiting.call
                    if waiting.answer is not None:  # an invalid line's answer, in its turn
                        self._pop()
                        self._outcomes.reject(waiting.sink, waiting.answer)
                    elif call is None:
                        assert waiting.req is not None
                        waiting.call = self._outcomes.admit(waiting.req, waiting.sink)
                        if waiting.call is None:  # answered already: no such method, ...
                            self._pop()
                    elif self._is_barrier(call) and call.spec.mode is not RunMode.SYNC:
                        await self._run_barrier(call, waiting.sink)
                    else:
                        self._pop()
                        self._launch(call, waiting.sink)
                await writer.flush()
                if not queue:  # (nothing arrived during the flush)
                    break
        finally:
            self._queue_task = False
            if self.idle:
                self._settled()

    async def _run_barrier(self, call: Invocation, sink: Sink) -> None:
        """Run the head barrier while it stays queued: what follows waits behind it."""
        start = time.perf_counter_ns() if self._timing else 0
        self._head_running = True
        try:
            answer = await self.executor.run(call)
        finally:
            self._head_running = False
            self._pop()
        self._outcomes.finish(call, sink, answer, start)

    def _drop(self, keep: Callable[[_Waiting], bool], answer: Callable[[Request], ErrorAnswer]) -> int:
        """Take what ``keep`` refuses out of the queue (not a running barrier), answering each."""
        queue = self.queue
        head = [queue.popleft()] if self._head_running else []
        kept, dropped = head, list[_Waiting]()
        for waiting in queue:
            (kept if keep(waiting) else dropped).append(waiting)
        queue.clear()
        queue.extend(kept)
        for waiting in dropped:
            self._queued_bytes -= waiting.size
            req = waiting.req
            if req is None:
                assert waiting.answer is not None
                self._outcomes.reject(waiting.sink, waiting.answer)
                continue
            if waiting.call is None:  # not counted yet
                if req.is_notification:
                    self._stats.notifications += 1
                else:
                    self._stats.calls += 1
            self._outcomes.reject(waiting.sink, answer(req))
        self._changed.unpark_all()
        return len(dropped)

    # -- the connection's events ------------------------------------------------------------

    def cancel(self, request_id: Any) -> bool:
        """rpc.cancel: the running call(s) with this id are cancelled, the waiting ones answered
        -32005 without running; True if there was one."""
        found = self.executor.running.cancel(request_id)

        def other(w: _Waiting) -> bool:
            return w.req is None or w.req.is_notification or w.req.id != request_id

        return self._drop(other, cancelled) > 0 or found

    def peer_gone(self) -> None:
        """Nobody will read answers: cancel and drop all but notifications and run-to-completion
        calls, which finish in the background (specs/protocol.md §10)."""
        self.executor.running.cancel_all(everything=False)
        survivors = self._survivors

        def survives(w: _Waiting) -> bool:
            return w.req is not None and (w.req.is_notification or w.req.method in survivors)

        self._drop(survives, lambda req: shutting_down(req, "cancelled"))  # (unsent: nobody reads)

    def stop(self) -> None:
        """The server stops: nothing that waits starts any more; each is answered -32002."""
        if self._drop(lambda w: False, shutting_down) and self._head_running:
            # (the queue's task runs the barrier in the nursery, so it is open)
            self._tasks.start_soon(self._writer.flush)  # the answers now, not once the barrier ends

    def cancel_everything(self) -> None:
        """The peer is gone and no more work may run on detached: cancel and drop all of it."""
        self.executor.running.cancel_all(everything=True)
        self._drop(lambda w: False, lambda req: shutting_down(req, "cancelled"))

    def cancel_for_shutdown(self) -> None:
        """The grace is over: cancel everything still running, run-to-completion calls too."""
        self.executor.shutdown = True
        self.stop()
        self.executor.running.cancel_all(everything=True)
