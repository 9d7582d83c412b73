"""One client connection: read lines, run requests in the promised order, write answers.

Ordering (specs/protocol.md §4): calls on a connection may run concurrently, up to
``max_in_flight``, and answer out of order. A notification is a barrier: it starts once
everything received before it has finished, and what follows waits for it. ``serial`` mode makes
every message a barrier. ``rpc.cancel`` alone runs at once, outside the order.

Cheap synchronous handlers run right here in the reader, with no task; async and blocking ones
get a task in the connection's nursery. Answers go through a :class:`~jrpc_unix._writer.Writer`
(one writer at a time; the answers of one read in one ``send_all``). Back-pressure: the reader
stops reading while ``max_in_flight`` calls run or ``max_pending_output`` bytes wait to be sent,
and stops handling a read's lines once they do, so a client that never reads cannot grow the
server.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import select
import socket as stdsocket
import struct
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._access import Access
from ._codec import loads, parser_for
from ._context import Peer, RequestContext, _current, inline_slot
from ._dispatch import Call
from ._errors import ErrorCode
from ._framing import TOO_LONG, LineSplitter
from ._methods import MethodSpec, RunMode
from ._protocol import FAILED_NOTIFICATION, Request, encode_error, is_valid_request, parse_json, parse_line
from ._push import Push
from ._throttle import Throttle
from ._writer import Writer

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["Connection", "read_peer"]

log = logging.getLogger("jrpc_unix.server")
noisy = Throttle(log)  # log lines any client can cause

_NOTIFICATION = object()  # the key of running notifications, which have no id
_ERROR_PREFIX = b'{"jsonrpc":"2.0","error"'
_PEERCRED = struct.Struct("3i")
Sink = Callable[[bytes | None], None]


def read_peer(stream: trio.SocketStream) -> Peer | None:
    """The peer's pid/uid/gid (SO_PEERCRED), or None where the platform has none."""
    try:
        raw = stream.socket.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_PEERCRED, _PEERCRED.size)
    except (OSError, AttributeError):
        return None
    pid, uid, gid = _PEERCRED.unpack(raw)
    return Peer(pid, uid, gid)


class _Batch:
    """Collects a batch's answers; writes them as one array once every member has answered."""

    __slots__ = ("_conn", "_parts", "_pending", "_sealed")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
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
            self._conn.deliver(b"[" + b",".join(self._parts) + b"]")
            self._parts = []


class Connection:
    """Serves one accepted stream until the peer leaves, idles out, or the server stops."""

    def __init__(self, server: Server, stream: trio.SocketStream, peer: Peer | None, level: Access) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.level = level
        self.in_flight = 0
        self._limits = server.limits
        self._dispatcher = server.dispatcher
        self._stats = server.stats
        self._timing = server.stats.per_method
        self._serial = server.serial
        self._splitter = LineSplitter(server.limits.max_message_size)
        self._changed = trio.lowlevel.ParkingLot()  # in_flight dropped or output drained
        self.writer = Writer(stream, self._changed, self._peer_gone)
        self.deliver = self.writer.deliver  # the sink of single requests
        self.flush = self.writer.flush
        self._reading_stopped = False
        self.reads = 0  # receive_some calls, for the idle watchdog
        self._half_closed = False  # the peer shut its write side (EOF)
        self._shutdown = False  # the server's grace is over: cancelled calls say so
        self._progress_seen = (-1, -1)  # the first tick counts as activity: a new connection
        self._idle_ticks = 0
        self._nursery: trio.Nursery | None = None
        self._running: dict[Any, list[tuple[trio.CancelScope, bool]]] = {}
        self._fast_specs = server.dispatcher.fast_specs(level)
        self._token = trio.lowlevel.current_trio_token()
        self._thread = threading.get_ident()
        self._inline = inline_slot()
        self.push = Push(self)

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._read_loop()
            await self.flush()
        finally:
            self.push.close()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    def wake_for_stop(self) -> None:
        """Server stopping: end subscriptions; stop reading now if no call runs."""
        self.push.close()
        if self.in_flight == 0:
            self.stop_reading()

    def stop_reading(self) -> None:
        """Wake the reader with EOF and let it finish (a cancel scope per read would cost ~4 us)."""
        if not self._reading_stopped:
            self._reading_stopped = True
            with contextlib.suppress(OSError):
                self.stream.socket.shutdown(stdsocket.SHUT_RD)

    def idle_tick(self) -> None:
        """Called by the server's watchdog every quarter of ``idle_timeout``.

        Closes a connection that for a whole ``idle_timeout`` received nothing and ran nothing,
        or sent nothing while its answers waited (a client that stopped reading would otherwise
        hold its slot, and its unsent answers, forever). A half-closed connection that still
        streams events or runs calls is checked for a full close too, which nothing else would
        notice while nothing is written.
        """
        if self._half_closed:
            if self._peer_closed():
                self._peer_gone()
                return
            if self.in_flight == 0:
                self.push.end_progress()  # no call can come any more to report progress on
        progress = (self.reads, self.writer.writes)
        stalled = self.writer.writing  # a send_all is blocked on the client
        if progress != self._progress_seen or not (stalled or self._idle()):
            self._progress_seen, self._idle_ticks = progress, 0
            return
        self._idle_ticks += 1
        if self._idle_ticks < 4:  # counted from a tick that saw activity: idle for (1, 1.25] x
            return
        if stalled:
            log.warning("closing a connection that read no answer for %s s", self._limits.idle_timeout)
            self.stream.socket.close()  # the blocked send_all fails: the peer is treated as gone
        else:
            log.info("closing a connection idle for %s s", self._limits.idle_timeout)
            self.stop_reading()

    def _idle(self) -> bool:
        return self.in_flight == 0 and not self.push.subscriptions

    async def _read_loop(self) -> None:
        server = self.server
        while not (server.stopping and self.in_flight == 0):
            await self.writer.wait_below(self._limits.max_pending_output)
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._peer_gone()
                return
            if self._reading_stopped:  # our own shutdown(SHUT_RD): server stop or idle timeout
                return
            self.reads += 1
            if not data:
                await self._handle_lines(self._splitter.eof())
                self._half_closed = True
                if self._peer_closed():
                    self._peer_gone()
                return
            await self._handle_lines(self._splitter.feed(data))
            if self.writer.broken:
                return

    def _peer_closed(self) -> bool:
        """After EOF: did the peer close entirely (POLLHUP), not just shut its write side?"""
        poller = select.poll()
        poller.register(self.stream.socket.fileno(), select.POLLHUP)
        return any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def _peer_gone(self) -> None:
        """Nobody will read answers: cancel calls not marked run-to-completion, end subscriptions."""
        for scopes in self._running.values():
            for scope, keep in scopes:
                if not keep:
                    scope.cancel()
        self.push.close()

    # -- requests --------------------------------------------------------------------------

    async def _handle_lines(self, lines: list[bytes | Any]) -> None:
        max_batch = self._limits.max_batch
        try:  # "\n" cannot be part of a digit run, so the joined lines are checked as a whole
            parse = parser_for(b"\n".join(lines))
        except TypeError:  # a TOO_LONG marker among them: check line by line
            parse = loads
        limit = self._limits.max_pending_output
        for line in lines:
            if self.writer.pending > limit:  # one read's answers alone can pass it: write, wait
                await self.flush()
                await self.writer.wait_below(limit)
                if self.writer.broken:
                    return
            if line is TOO_LONG:
                data = f"message exceeds the limit of {self._limits.max_message_size} bytes"
                answer = encode_error(None, ErrorCode.REQUEST_TOO_LARGE, data=data)
                self._reject("too_large", self.deliver, answer)
                continue
            try:
                obj = parse(line)
            except ValueError:
                message = parse_line(line, max_batch)  # the parse error answer
            else:
                if type(obj) is dict and self._fast(obj):
                    continue
                message = parse_json(obj, max_batch)
            if not message.is_batch:
                item = message.items[0]
                if type(item) is bytes:
                    self._reject_invalid(self.deliver, item)
                else:
                    await self._submit(item, self.deliver)  # type: ignore[arg-type]
                continue
            batch = _Batch(self)
            for item in message.items:
                if type(item) is bytes:
                    self._reject_invalid(batch.expect(), item)
                else:
                    await self._submit(item, batch.expect())  # type: ignore[arg-type]
            batch.seal()
        await self.flush()

    def _fast(self, obj: dict[str, Any]) -> bool:
        """Answer the common case here: one request to a quick synchronous handler.

        Same answers and statistics as :meth:`_submit` -> :meth:`_call_inline` ->
        :meth:`_finish` (the test suite runs both ways), written out in one function: nearly
        every request takes this path, and each call saved is ~3 % of it. False hands the
        request to :meth:`_submit`: anything unusual, anything that must wait, anything that
        needs a task.
        """
        method = obj.get("method")
        spec = self._fast_specs.get(method) if type(method) is str else None
        if spec is None or self.server.stopping or not is_valid_request(obj):
            return False
        params = obj.get("params")
        if not spec.shape.accepts(params):
            return False
        stats = self._stats
        notification = "id" not in obj
        if notification:
            if self.in_flight:  # a barrier: it must wait for the calls before it
                return False
            stats.notifications += 1
        else:
            stats.calls += 1
        name, rid = spec.name, obj.get("id")
        start = time.perf_counter_ns() if self._timing else 0
        inline = self._inline  # what current_context() reads; see _call_inline
        inline.connection, inline.method, inline.request_id = self, name, rid
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
            self.push.before_answer()
        if start:
            m.latency.add(time.perf_counter_ns() - start)
        if answer is not None:
            if not answer or answer.startswith(_ERROR_PREFIX):
                m.errors += 1
                stats.errors += 1
            self.deliver(answer)
        return True

    def _call_inline(
        self, spec: MethodSpec, rid: Any, notification: bool, args: Any, kwargs: dict[str, Any]
    ) -> bytes | None:
        """Run a synchronous handler right here; nothing else runs until it returns.

        So the server only points its thread's inline slot at the request rather than setting
        a contextvar; :func:`current_context` builds the context if the handler asks.
        """
        inline = self._inline
        inline.connection, inline.method, inline.request_id = self, spec.name, rid
        inline.notification = notification
        try:
            value = spec.func(*args, **kwargs)
        except Exception as exc:
            return self._dispatcher.encode_exception(spec.name, rid, notification, exc)
        finally:
            inline.connection = None
        return self._dispatcher.encode_value(spec.name, rid, notification, value)

    def _reject_invalid(self, sink: Sink, answer: bytes) -> None:
        reason = "parse_error" if b'"code":-32700' in answer else "invalid_request"
        self._reject(reason, sink, answer)

    def _reject(self, reason: str, sink: Sink, answer: bytes | None) -> None:
        self._stats.rejected_requests[reason] += 1
        if answer is not None:
            self._stats.errors += 1
        sink(answer)

    async def _submit(self, req: Request, sink: Sink) -> None:
        stats = self._stats
        if req.is_notification:
            stats.notifications += 1
        else:
            stats.calls += 1
        if self.server.stopping:
            answer = (
                FAILED_NOTIFICATION if req.is_notification else encode_error(req.id, ErrorCode.SHUTTING_DOWN)
            )
            self._reject("shutting_down", sink, answer)
            return
        needed = self._dispatcher.access_needed(req.method)  # before params: -32602 would tell of them
        if needed is not None and needed > self.level:
            need, have = needed.name.lower(), self.level.name.lower()
            data = f"{req.method} needs {need} access; you have {have}"
            noisy.warning("access_denied", "denied %s to %s: %s", req.method, self.peer, data)
            denied = (
                FAILED_NOTIFICATION
                if req.is_notification
                else encode_error(req.id, ErrorCode.ACCESS_DENIED, data=data)
            )
            self._reject("access_denied", sink, denied)
            return
        call = self._dispatcher.prepare(req)
        if type(call) is not Call:
            known = self._dispatcher.knows(req.method)
            self._finish(req.method, req.is_notification, known, sink, call, 0)  # type: ignore[arg-type]
            return
        spec = call.spec
        if spec.immediate:
            self._finish(req.method, req.is_notification, True, sink, self._execute_sync(call), 0)
            return
        if req.is_notification or self._serial:
            while self.in_flight:  # barrier: everything received before it has finished
                await self._changed.park()
            start = time.perf_counter_ns() if self._timing else 0
            self._finish(req.method, req.is_notification, True, sink, await self._cancellable(call), start)
            return
        if spec.mode is RunMode.SYNC:
            start = time.perf_counter_ns() if self._timing else 0
            self._finish(req.method, False, True, sink, self._execute_sync(call), start)
            return
        while self.in_flight >= self._limits.max_in_flight:
            await self._changed.park()
        self.in_flight += 1
        stats.in_flight += 1
        scope = trio.CancelScope()  # registered now, so an rpc.cancel right behind finds it
        entry = (scope, spec.run_to_completion)
        self._running.setdefault(req.id, []).append(entry)
        assert self._nursery is not None
        self._nursery.start_soon(self._run_task, call, sink, entry)

    def _finish(
        self, method: str, notification: bool, known: bool, sink: Sink, answer: bytes | None, start: int
    ) -> None:
        """Count the outcome, put progress reports ahead of the answer, hand the answer on."""
        m = self._stats.method(method, known)
        if notification:
            m.notifications += 1
        else:
            m.calls += 1
            self.push.before_answer()
        if start:
            m.latency.add(time.perf_counter_ns() - start)
        if answer is not None and (not answer or answer.startswith(_ERROR_PREFIX)):
            m.errors += 1
            self._stats.errors += 1
        sink(answer)

    async def _cancellable(
        self, call: Call, entry: tuple[trio.CancelScope, bool] | None = None
    ) -> bytes | None:
        """Run a call where rpc.cancel, a disconnect and the shutdown deadline can cancel it.

        A cancelled call still answers: -32005, or -32002 when the server's grace ran out.
        """
        req = call.request
        # Notifications are not rpc.cancel's to find (their key is no id) and survive a
        # disconnect; only the shutdown deadline cancels them.
        key = _NOTIFICATION if req.is_notification else req.id
        if entry is None:
            entry = (trio.CancelScope(), call.spec.run_to_completion or req.is_notification)
            self._running.setdefault(key, []).append(entry)
        scope = entry[0]
        try:
            with scope:
                return await self._execute(call)
        finally:
            scopes = self._running[key]
            scopes.remove(entry)
            if not scopes:
                del self._running[key]
            if scope.cancelled_caught:
                reason = "shutting_down" if self._shutdown else "cancelled"
                self._stats.rejected_requests[reason] += 1
        if req.is_notification:
            return FAILED_NOTIFICATION
        if self._shutdown:
            data = f"{req.method} was cancelled: the server is shutting down"
            return encode_error(req.id, ErrorCode.SHUTTING_DOWN, data=data)
        return encode_error(req.id, ErrorCode.CANCELLED, data=f"{req.method} was cancelled")

    def cancel_for_shutdown(self) -> None:
        """The server's grace is over: cancel every running call, even run-to-completion ones."""
        self._shutdown = True
        for scopes in self._running.values():
            for scope, _ in scopes:
                scope.cancel()

    async def _run_task(self, call: Call, sink: Sink, entry: tuple[trio.CancelScope, bool]) -> None:
        req = call.request
        start = time.perf_counter_ns() if self._timing else 0
        try:
            self._finish(req.method, False, True, sink, await self._cancellable(call, entry), start)
        finally:
            self.in_flight -= 1
            self._stats.in_flight -= 1
            self._changed.unpark_all()
            if self.server.stopping and self.in_flight == 0:
                self.stop_reading()
        await self.flush()

    def cancel(self, request_id: Any) -> bool:
        """Cancel the running call(s) with this request id; True if there was one."""
        scopes = self._running.get(request_id, [])
        for scope, _ in scopes:
            scope.cancel()
        return bool(scopes)

    def _context(self, call: Call) -> RequestContext:
        req = call.request
        return RequestContext(req.method, req.id, req.is_notification, self.peer, self.server, self)

    def _execute_sync(self, call: Call) -> bytes | None:
        req = call.request
        return self._call_inline(call.spec, req.id, req.is_notification, call.args, call.kwargs)

    async def _execute(self, call: Call) -> bytes | None:
        spec = call.spec
        if spec.mode is RunMode.SYNC:  # cannot be interrupted, so no timeout applies
            return self._execute_sync(call)
        timeout = spec.timeout if spec.timeout is not None else self._limits.handler_timeout
        token = _current.set(self._context(call))
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
                if spec.mode is RunMode.ASYNC:
                    value = await spec.func(*call.args, **call.kwargs)
                else:
                    func = functools.partial(spec.func, *call.args, **call.kwargs)
                    value = await trio.to_thread.run_sync(func, abandon_on_cancel=True)
        except Exception as exc:
            return self._dispatcher.answer_exception(call, exc)
        finally:
            _current.reset(token)
        if scope.cancelled_caught:
            req = call.request
            data = f"{req.method} ran longer than {timeout} s and was cancelled"
            noisy.warning("timeout", "%s", data)
            self._stats.rejected_requests["timeout"] += 1
            return (
                FAILED_NOTIFICATION
                if req.is_notification
                else encode_error(req.id, ErrorCode.TIMEOUT, data=data)
            )
        return self._dispatcher.answer(call, value)
