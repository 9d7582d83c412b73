"""One client connection's life: read, pause, notice the peer leave, idle out, stop.

The reader reads lines and hands them to :class:`~jrpc_unix._server.calls.Calls`, which answers,
starts or queues each request without ever making the reader wait; answers go through a
:class:`~jrpc_unix._server.writer.Writer` (the answers of one read in one ``send_all``). Reading pauses
only while the queue of waiting requests is full; a client that never reads its answers is
thereby bounded too, as its requests wait for the answers to drain (specs/protocol.md §7).
All of that (:class:`Parts`, and the nursery its tasks run in) is made with the first bytes: until
then a connection is its socket, this object and one task in one read (specs/performance.md, "Memory").

The connection ends (specs/protocol.md §5) when the client half-closes (everything received is
answered first), when the server stops, or when it idles out. When the peer is *gone* (it closed
entirely, or it stopped reading its answers, or sent an unfinished message for ``idle_timeout``)
nobody can read an answer any more: its socket is closed and its slot freed at once, its calls
cancelled, except notifications and run-to-completion calls, which finish in the background
(*detached*; at most ``max_connections`` connections at once, beyond which all is cancelled).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket as stdsocket
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio

from .._service.access import Access, Peer
from .._service.throttle import Throttle
from .._wire.framings import UNKNOWN, Framer, detect, first_bytes
from .._wire.unixsock import make_framer
from .calls import Calls
from .hangup import closed_entirely
from .loop import TaskNursery
from .outbox import Outbox
from .shared import ServeContext
from .writer import Writer

__all__ = ["Connection"]

log = logging.getLogger("jrpc_unix.server")
throttled_log = Throttle(log)  # log lines any client can cause
_TICKS = 4  # idle_timeout is checked every quarter of it
_ids = itertools.count(1)


class Parts:
    """What a connection needs once its first bytes have come: an idle one has none of it."""

    __slots__ = ("calls", "changed", "outbox", "tasks", "writer")

    def __init__(self, conn: Connection, shared: ServeContext) -> None:
        self.changed = trio.lowlevel.ParkingLot()  # a call ended, output drained, a request left the queue
        self.tasks = TaskNursery()
        self.writer = Writer(conn.stream, self.changed, conn._gone)
        self.outbox = Outbox(shared, self.writer, self.tasks, conn.peer.uid if conn.peer is not None else -1)
        self.calls = Calls(shared, conn, self.writer, self.outbox, self.changed, self.tasks, conn.settled)


class Connection:
    """Serves one accepted stream until the peer leaves, idles out, or the server stops.

    It is also what a handler's ``current_context().connection`` is: a
    :class:`~jrpc_unix._service.context.ConnectionHandle`.
    """

    __slots__ = (
        "_first", "_framer", "_line_seen", "_line_ticks", "_paused",
        "_quiet_ticks", "_reading_stopped", "_seen", "_shared", "active", "framing", "gone", "id",
        "level", "messages", "opened", "parts", "peer", "reading", "reads", "server", "stream",
    )  # fmt: skip

    def __init__(
        self, shared: ServeContext, stream: trio.SocketStream, peer: Peer | None, level: Access
    ) -> None:
        self._shared = shared
        self.id = next(_ids)  # what rpc.connections shows and rpc.disconnect/rpc.cancel name
        self.opened = self.active = time.monotonic()  # (active: the last read, for rpc.connections)
        self.server = shared.server
        self.stream = stream
        self.peer = peer
        self.level = level
        #: The client's framing ("newline", "unixsock", "lsp", "json-seq"; "unknown" for
        #: unrecognised first bytes, read as newline JSON), once its first bytes have come.
        self.framing: str | None = None
        self._framer: Framer | None = None
        self._first = b""  # the first bytes, until they tell the framing
        self.parts: Parts | None = None  # made once the first bytes have told the framing
        self.gone = False  # nobody can read answers any more
        self.reading = True  # the reader has not ended yet
        self._reading_stopped = False  # our own shutdown(SHUT_RD): server stop or idle timeout
        self._paused = False  # the queue of waiting requests is full
        self.reads = 0  # receive_some calls, for the idle watchdog
        self.messages = 0  # reads that completed a line, for the idle watchdog
        self._seen: tuple[int, int] = (-1, -1)  # (reads, writes) at the last tick that saw activity
        self._quiet_ticks = 0
        self._line_seen = -1  # ``messages`` when an unfinished line was first seen; -1: none
        self._line_ticks = 0

    @property
    def _parts(self) -> Parts:
        """The parts, for what only a request can cause (they exist once a request has come)."""
        assert self.parts is not None, "no request has come on this connection yet"
        return self.parts

    # -- what handlers may do (ConnectionHandle) ---------------------------------------------

    @property
    def subscription_count(self) -> int:
        return len(self._parts.outbox.subscriptions)

    def subscribe(
        self, topic: str, events: AsyncIterator[Any] | None, queue_size: int, backlog: Sequence[bytes] = ()
    ) -> str:
        return self._parts.outbox.subscribe(topic, events, queue_size, backlog).id

    def unsubscribe(self, subscription: str) -> bool:
        return self._parts.outbox.unsubscribe(subscription)

    def cancel(self, request_id: Any) -> bool:
        """rpc.cancel on this connection (see :meth:`Schedule.cancel`)."""
        return self._parts.calls.schedule.cancel(request_id)

    def report_progress(self, request_id: Any, done: float, total: float | None, message: str | None) -> None:
        parts = self._parts
        parts.calls.schedule.executor.running.touch(request_id)  # (rpc.inflight's last progress)
        parts.outbox.report_progress(request_id, done, total, message)

    def disconnect(self) -> bool:
        """rpc.disconnect: close now, as if the peer had left; False if it had already."""
        if self.gone:
            return False
        self._gone()
        return True

    # -- life ------------------------------------------------------------------------------

    async def serve(self) -> None:
        """The connection's task, from accept to close: one coroutine frame and one read while
        no byte has come (the parts and the nursery are made with the first bytes)."""
        self._shared.connections.add(self)
        try:
            try:
                framer = None
                while framer is None:  # until the first bytes tell the framing
                    try:
                        data = await self.stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        self._gone()
                        break
                    framer = self._detect(data)
                if framer is not None:
                    parts = self.parts = Parts(self, self._shared)
                    if framer.name not in ("newline", UNKNOWN):  # (the writer inlines newline framing)
                        parts.writer.encode = framer.encode
                    async with trio.open_nursery() as nursery:
                        parts.tasks.nursery = nursery
                        await self._read_loop(framer, parts)
                        self.reading = False
                        if not self.gone:  # calls and events may run on: a close must still be seen
                            self._watch_hangup()
                            self.settled_if_idle()
                    parts.tasks.nursery = None  # closed to new tasks
                    await parts.writer.flush()
            finally:
                if self.parts is not None:
                    self.parts.outbox.close()
                self._close()
                with trio.CancelScope(shield=True):
                    await self.stream.aclose()
        except Exception:
            log.exception("connection failed")
        finally:
            self._shared.connections.release(self)

    def _detect(self, data: bytes) -> Framer | None:
        """Take one read of the first bytes; the framer once they tell the framing
        (specs/protocol.md, "Framings"), None while they do not yet."""
        self.reads += 1
        self.active = time.monotonic()
        first = self._first = self._first + data
        name = detect(first) if data else UNKNOWN
        if name is None:
            return None
        if name == UNKNOWN and first:
            throttled_log.warning("framing", "framing not recognised: first bytes %s", first_bytes(first))
        self.framing = name
        framer = self._framer = make_framer(name, self._shared.limits.max_message_size)
        return framer

    async def _at_eof(self, framer: Framer, calls: Calls, writer: Writer) -> None:
        if not self._reading_stopped:  # the peer's EOF: a last line without "\n" counts
            calls.handle_lines(framer.eof())
            if closed_entirely(self.stream.socket.fileno()):
                self._gone()
                return
        await writer.flush()

    async def _read_loop(self, splitter: Framer, parts: Parts) -> None:
        calls, writer, schedule = parts.calls, parts.writer, parts.calls.schedule
        data, self._first = self._first, b""  # the first bytes, which told the framing
        while True:
            if not data:
                await self._at_eof(splitter, calls, writer)
                return
            lines = splitter.feed(data)
            if lines:
                self.messages += 1
                calls.handle_lines(lines)
                await writer.flush()
                if self.gone:
                    return
            if splitter.ended:  # the client asked to close (unixsock), or broke the framing
                self.stop_reading()
            while schedule.queue and schedule.full:
                await self._wait_for_room(parts)
                if self.gone:
                    return
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._gone()
                return
            self.reads += 1
            self.active = time.monotonic()

    async def _wait_for_room(self, parts: Parts) -> None:
        """Read nothing until the queue has room; a close meanwhile is noticed all the same."""
        self._paused = True
        self._watch_hangup()
        try:
            while parts.calls.schedule.full and not self.gone:
                await parts.changed.park()
        finally:
            self._paused = False
            self._unwatch_hangup()

    def settled_if_idle(self) -> None:
        if self.parts is None or self.parts.calls.schedule.idle:
            self.settled()

    def settled(self) -> None:
        """Nothing runs or waits any more (the schedule calls this)."""
        if self._shared.stopping:
            self.stop_reading()
        if not self.reading and self.parts is not None:
            self.parts.outbox.end_progress()  # no call can come any more to report progress on

    def wake_for_stop(self) -> None:
        """Server stopping: end subscriptions, answer what waits -32002, stop reading if idle."""
        if self.parts is not None:
            self.parts.outbox.close()
            self.parts.calls.schedule.stop()
        self.settled_if_idle()

    def cancel_for_shutdown(self) -> None:
        """The server's grace is over: cancel every call, even run-to-completion ones."""
        if self.parts is not None:
            self.parts.calls.schedule.cancel_for_shutdown()

    def stop_reading(self) -> None:
        """Wake the reader with EOF and let it finish (cheaper than a cancel scope per read)."""
        if not self._reading_stopped and not self.gone:
            self._reading_stopped = True
            with contextlib.suppress(OSError):
                self.stream.socket.shutdown(stdsocket.SHUT_RD)

    # -- the peer leaving ------------------------------------------------------------------

    def _gone(self) -> None:
        """Nobody will read answers: drop them, cancel what may be cancelled, free the slot."""
        if self.gone:
            return
        self.gone = True
        if (parts := self.parts) is None:
            self._close()  # wakes the reader
            return
        schedule = parts.calls.schedule
        parts.writer.abandon()
        schedule.peer_gone()
        parts.outbox.close()
        self._close()  # wakes our reader and writer, if they wait on the socket
        parts.changed.unpark_all()
        if not schedule.idle and not self._shared.connections.detach(self):  # (idle: it ends at once)
            throttled_log.warning("detached", "too many connections run on for clients that left; cancelling")
            schedule.cancel_everything()

    def _close(self) -> None:
        self._unwatch_hangup()
        self.stream.socket.close()

    def _watch_hangup(self) -> None:
        self._shared.hangups.watch(self.stream.socket.fileno(), self._gone)

    def _unwatch_hangup(self) -> None:  # (the number is ours while the socket is open)
        if (fd := self.stream.socket.fileno()) >= 0:
            self._shared.hangups.unwatch(fd)

    # -- the idle watchdog -----------------------------------------------------------------

    def idle_tick(self) -> None:
        """Called by the server's watchdog every quarter of ``idle_timeout``; after a whole
        ``idle_timeout`` (to within a quarter of it):

        * nothing received and nothing running (nor subscribed): closed (reading stops);
        * a write blocked on a client that reads nothing: the peer is gone (it would otherwise
          hold its slot, and its unsent answers, forever);
        * one message still unfinished (slowloris): gone too. Each message must arrive whole
          within ``idle_timeout`` of its first byte, however its bytes trickle in.
        """
        if self.gone:
            return
        writer = self.parts.writer if self.parts is not None else None
        stalled = writer is not None and writer.writing
        progress = (self.reads, writer.writes if writer is not None else 0)
        if progress != self._seen or not (stalled or self._idle()):
            self._seen, self._quiet_ticks = progress, 0
        else:
            self._quiet_ticks += 1
        reading_a_line = self.reading and not self._paused and not stalled and self._mid_message()
        if not reading_a_line or self.messages != self._line_seen:
            self._line_seen, self._line_ticks = (self.messages if reading_a_line else -1), 0
        else:
            self._line_ticks += 1
        timeout = self._shared.limits.idle_timeout
        if self._quiet_ticks >= _TICKS and stalled:
            throttled_log.warning("stalled", "closing a connection that read no answer for %s s", timeout)
            self._gone()
        elif self._quiet_ticks >= _TICKS:
            log.info("closing a connection idle for %s s", timeout)
            self.stop_reading()
        elif self._line_ticks >= _TICKS:
            throttled_log.warning(
                "slow_message", "closing a connection whose message took over %s s", timeout
            )
            self._gone()

    def _mid_message(self) -> bool:
        framer = self._framer
        return bool(self._first) if framer is None else framer.mid_line

    def _idle(self) -> bool:
        return self.parts is None or (self.parts.calls.schedule.idle and not self.parts.outbox.subscriptions)
