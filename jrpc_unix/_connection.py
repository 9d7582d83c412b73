"""One client connection: read lines, run requests in the promised order, write answers.

Ordering (specs/protocol.md, "Ordering"): calls on a connection may run concurrently, up to
``max_in_flight``, and answer out of order. A notification is a barrier: it starts once
everything received before it has finished, and what follows waits for it. ``serial`` mode makes
every message a barrier.

Cheap synchronous handlers run right here in the reader, with no task; async and blocking ones
get a task in the connection's nursery. Answers produced by one read go out in one ``send_all``.
Whoever finds the writer idle writes (the reader or a finishing task), so writes never
interleave. Back-pressure: the reader stops reading while ``max_in_flight`` calls run or
``max_pending_output`` bytes wait to be sent, so a client that never reads cannot grow the server.
"""

from __future__ import annotations

import functools
import logging
import math
import socket as stdsocket
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from ._access import Access
from ._context import Peer, RequestContext, _current
from ._dispatch import Call
from ._errors import ErrorCode
from ._framing import TOO_LONG, LineSplitter
from ._methods import RunMode
from ._protocol import Request, encode_error, parse_line

if TYPE_CHECKING:
    from ._server import Server

__all__ = ["Connection", "read_peer"]

log = logging.getLogger("jrpc_unix.server")

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
        if answer is not None:
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
    """Serves one accepted stream until EOF, error, idle timeout or server stop."""

    def __init__(self, server: Server, stream: trio.SocketStream, peer: Peer | None, level: Access) -> None:
        self.server = server
        self.stream = stream
        self.peer = peer
        self.level = level
        self.in_flight = 0
        self._limits = server.limits
        self._dispatcher = server.dispatcher
        self._stats = server.stats
        self._serial = server.serial
        self._splitter = LineSplitter(server.limits.max_message_size)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._writing = False
        self._broken = False
        self._changed = trio.lowlevel.ParkingLot()  # in_flight or output drained
        self._read_scope: trio.CancelScope | None = None
        self._nursery: trio.Nursery | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._read_loop()
            await self.flush()
        finally:
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    def wake_for_stop(self) -> None:
        """Server stopping: stop reading now if nothing runs (else when the last call ends)."""
        if self.in_flight == 0 and self._read_scope is not None:
            self._read_scope.cancel()

    async def _read_loop(self) -> None:
        idle = self._limits.idle_timeout
        server = self.server
        while not (server.stopping and self.in_flight == 0):
            while self._out_bytes > self._limits.max_pending_output and not self._broken:
                await self._changed.park()
            deadline = trio.current_time() + idle if idle is not None else math.inf
            scope = self._read_scope = trio.CancelScope(deadline=deadline)
            data = b""
            with scope:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
            self._read_scope = None
            if scope.cancelled_caught:
                if server.stopping or self.in_flight == 0:
                    return
                continue
            if not data:
                await self._handle_lines(self._splitter.eof())
                return
            await self._handle_lines(self._splitter.feed(data))
            if self._broken:
                return

    # -- requests --------------------------------------------------------------------------

    async def _handle_lines(self, lines: list[bytes | Any]) -> None:
        for line in lines:
            if line is TOO_LONG:
                data = f"message exceeds the limit of {self._limits.max_message_size} bytes"
                self.deliver(encode_error(None, ErrorCode.REQUEST_TOO_LARGE, data=data))
                self._stats.errors += 1
                continue
            message = parse_line(line, self._limits.max_batch)
            if not message.is_batch:
                item = message.items[0]
                if type(item) is bytes:
                    self._answer(self.deliver, item)
                else:
                    await self._submit(item, self.deliver)  # type: ignore[arg-type]
                continue
            batch = _Batch(self)
            for item in message.items:
                if type(item) is bytes:
                    self._answer(batch.expect(), item)
                else:
                    await self._submit(item, batch.expect())  # type: ignore[arg-type]
            batch.seal()
        await self.flush()

    async def _submit(self, req: Request, sink: Sink) -> None:
        stats = self._stats
        if req.is_notification:
            stats.notifications += 1
        else:
            stats.calls += 1
        if self.server.stopping:
            self._answer(sink, None if req.is_notification else encode_error(req.id, ErrorCode.SHUTTING_DOWN))
            return
        call = self._dispatcher.prepare(req)
        if type(call) is not Call:
            self._answer(sink, call)  # type: ignore[arg-type]
            return
        if call.spec.access > self.level:
            need, have = call.spec.access.name.lower(), self.level.name.lower()
            data = f"{req.method} needs {need} access; you have {have}"
            log.warning("denied %s to %s: %s", req.method, self.peer, data)
            denied = None if req.is_notification else encode_error(req.id, ErrorCode.ACCESS_DENIED, data=data)
            self._answer(sink, denied)
            return
        if req.is_notification or self._serial:
            while self.in_flight:  # barrier: everything received before it has finished
                await self._changed.park()
            self._answer(sink, await self._execute(call))
            return
        while self.in_flight >= self._limits.max_in_flight:
            await self._changed.park()
        if call.spec.mode is RunMode.SYNC:
            self._answer(sink, self._execute_sync(call))
            return
        self.in_flight += 1
        stats.in_flight += 1
        assert self._nursery is not None
        self._nursery.start_soon(self._run_task, call, sink)

    async def _run_task(self, call: Call, sink: Sink) -> None:
        try:
            self._answer(sink, await self._execute(call))
        finally:
            self.in_flight -= 1
            self._stats.in_flight -= 1
            self._changed.unpark_all()
            if self.server.stopping and self.in_flight == 0 and self._read_scope is not None:
                self._read_scope.cancel()
        await self.flush()

    def _context(self, call: Call) -> RequestContext:
        req = call.request
        return RequestContext(req.method, req.id, req.is_notification, self.peer, self.server)

    def _execute_sync(self, call: Call) -> bytes | None:
        token = _current.set(self._context(call))
        try:
            value = call.spec.func(*call.args, **call.kwargs)
        except Exception as exc:
            return self._dispatcher.answer_exception(call, exc)
        finally:
            _current.reset(token)
        return self._dispatcher.answer(call, value)

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
            data = f"{call.request.method} ran longer than {timeout} s and was cancelled"
            log.warning("%s", data)
            if call.request.is_notification:
                return None
            return encode_error(call.request.id, ErrorCode.TIMEOUT, data=data)
        return self._dispatcher.answer(call, value)

    # -- answers ---------------------------------------------------------------------------

    def _answer(self, sink: Sink, answer: bytes | None) -> None:
        if answer is not None and answer.startswith(_ERROR_PREFIX):
            self._stats.errors += 1
        sink(answer)

    def deliver(self, answer: bytes | None) -> None:
        """Queue one answer line for the writer."""
        if answer is not None and not self._broken:
            self._out.append(answer)
            self._out_bytes += len(answer) + 1

    async def flush(self) -> None:
        """Write queued answers unless another task is already writing (it will take them)."""
        if self._writing:
            return
        self._writing = True
        try:
            while self._out and not self._broken:
                data = b"\n".join(self._out) + b"\n"
                self._out.clear()
                try:
                    await self.stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._broken = True
                    self._out.clear()
                self._out_bytes -= len(data)
                self._changed.unpark_all()
        finally:
            self._writing = False
