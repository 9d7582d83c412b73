"""One client connection's life: read, pause, notice the peer leave, idle out, stop.

The reader reads lines and hands them to :class:`~jrpc_unix._server.calls.Calls`, which answers,
starts or queues each request without ever making the reader wait; answers go through a
:class:`~jrpc_unix._server.writer.Writer` (the answers of one read in one ``send_all``). Reading pauses
only while the queue of waiting requests is full; a client that never reads its answers is
thereby bounded too, as its requests wait for the answers to drain (specs/protocol.md §7).

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
import select
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
from .loop import TaskNursery
from .outbox import Outbox
from .shared import ServeContext
from .writer import Writer

__all__ = ["Connection"]

log = logging.getLogger("jrpc_unix.server")
throttled_log = Throttle(log)  # log lines any client can cause
_TICKS = 4  # idle_timeout is checked every quarter of it
_ids = itertools.count(1)


class Connection:
    """Serves one accepted stream until the peer leaves, idles out, or the server stops.

    It is also what a handler's ``current_context().connection`` is: a
    :class:`~jrpc_unix._service.context.ConnectionHandle`.
    """

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
        self._limits = shared.limits
        #: The client's framing ("newline", "unixsock", "lsp", "json-seq"; "unknown" for
        #: unrecognised first bytes, read as newline JSON), once its first bytes have come.
        self.framing: str | None = None
        self._framer: Framer | None = None
        self._first = b""  # the first bytes, until they tell the framing
        self.changed = trio.lowlevel.ParkingLot()  # a call ended, output drained, a request left the queue
        self.tasks = TaskNursery()
        self.writer = Writer(stream, self.changed, self._gone)
        self.flush = self.writer.flush
        self.outbox = Outbox(shared, self.writer, self.tasks, peer.uid if peer is not None else -1)
        self.calls = Calls(shared, self, self.writer, self.outbox, self.changed, self.tasks, self.settled)
        self.gone = False  # nobody can read answers any more
        self.reading = True  # the reader has not ended yet
        self._reading_stopped = False  # our own shutdown(SHUT_RD): server stop or idle timeout
        self._paused = False  # the queue of waiting requests is full
        self._hangup_fd = -1  # watched for the peer's close while nobody reads
        self.reads = 0  # receive_some calls, for the idle watchdog
        self.messages = 0  # reads that completed a line, for the idle watchdog
        self._seen: tuple[int, int] = (-1, -1)  # (reads, writes) at the last tick that saw activity
        self._quiet_ticks = 0
        self._line_seen = -1  # ``messages`` when an unfinished line was first seen; -1: none
        self._line_ticks = 0

    # -- what handlers may do (ConnectionHandle) ---------------------------------------------

    @property
    def subscription_count(self) -> int:
        return len(self.outbox.subscriptions)

    def subscribe(
        self, topic: str, events: AsyncIterator[Any] | None, queue_size: int, backlog: Sequence[bytes] = ()
    ) -> str:
        return self.outbox.subscribe(topic, events, queue_size, backlog).id

    def unsubscribe(self, subscription: str) -> bool:
        return self.outbox.unsubscribe(subscription)

    def cancel(self, request_id: Any) -> bool:
        """rpc.cancel on this connection (see :meth:`Schedule.cancel`)."""
        return self.calls.schedule.cancel(request_id)

    def report_progress(self, request_id: Any, done: float, total: float | None, message: str | None) -> None:
        self.calls.schedule.executor.running.touch(request_id)  # (rpc.inflight's last progress)
        self.outbox.report_progress(request_id, done, total, message)

    def disconnect(self) -> bool:
        """rpc.disconnect: close now, as if the peer had left; False if it had already."""
        if self.gone:
            return False
        self._gone()
        return True

    # -- life ------------------------------------------------------------------------------

    async def serve(self) -> None:
        try:
            async with trio.open_nursery() as nursery:
                self.tasks.nursery = nursery
                await self._read_loop()
                self.reading = False
                if not self.gone:  # calls and events may run on: a close must still be seen
                    self._watch_hangup()
                    self.settled_if_idle()
            self.tasks.nursery = None  # closed to new tasks
            await self.flush()
        finally:
            self.outbox.close()
            self._close()
            with trio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _detect(self) -> Framer | None:
        """Read until the first bytes tell the framing (specs/protocol.md, "Framings"); None if
        the peer left first. The framer has been fed those bytes."""
        while True:
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._gone()
                return None
            self.reads += 1
            self.active = time.monotonic()
            first = self._first = self._first + data
            name = detect(first) if data else UNKNOWN
            if name is None:
                continue
            if name == UNKNOWN and first:
                throttled_log.warning("framing", "framing not recognised: first bytes %s", first_bytes(first))
            self.framing = name
            framer = self._framer = make_framer(name, self._limits.max_message_size)
            self._first = b""
            if name not in ("newline", UNKNOWN):  # (the writer inlines newline framing)
                self.writer.encode = framer.encode
            if not first:  # the peer's EOF before any byte
                await self._at_eof(framer)
                return None
            lines = framer.feed(first)
            if lines:
                self.messages += 1
                self.calls.handle_lines(lines)
                await self.flush()
            return framer

    async def _at_eof(self, framer: Framer) -> None:
        if not self._reading_stopped:  # the peer's EOF: a last line without "\n" counts
            self.calls.handle_lines(framer.eof())
            if self._peer_closed():
                self._gone()
                return
        await self.flush()

    async def _read_loop(self) -> None:
        splitter = await self._detect()
        if splitter is None or self.gone:
            return
        calls = self.calls
        schedule = calls.schedule
        while True:
            if splitter.ended:  # the client asked to close (unixsock), or broke the framing
                self.stop_reading()
            if schedule.queue and schedule.full:
                await self._wait_for_room()
                if self.gone:
                    return
                continue
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._gone()
                return
            self.reads += 1
            self.active = time.monotonic()
            if not data:
                await self._at_eof(splitter)
                return
            lines = splitter.feed(data)
            if lines:
                self.messages += 1
                calls.handle_lines(lines)
                await self.flush()
                if self.gone:
                    return

    async def _wait_for_room(self) -> None:
        """Read nothing until the queue has room; a close meanwhile is noticed all the same."""
        self._paused = True
        self._watch_hangup()
        try:
            while self.calls.schedule.full and not self.gone:
                await self.changed.park()
        finally:
            self._paused = False
            self._unwatch_hangup()

    def settled_if_idle(self) -> None:
        if self.calls.schedule.idle:
            self.settled()

    def settled(self) -> None:
        """Nothing runs or waits any more (the schedule calls this)."""
        if self._shared.stopping:
            self.stop_reading()
        if not self.reading:
            self.outbox.end_progress()  # no call can come any more to report progress on

    def wake_for_stop(self) -> None:
        """Server stopping: end subscriptions, answer what waits -32002, stop reading if idle."""
        self.outbox.close()
        self.calls.schedule.stop()
        self.settled_if_idle()

    def cancel_for_shutdown(self) -> None:
        """The server's grace is over: cancel every call, even run-to-completion ones."""
        self.calls.schedule.cancel_for_shutdown()

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
        self.writer.abandon()
        self.calls.schedule.peer_gone()
        self.outbox.close()
        self._close()  # wakes our reader and writer, if they wait on the socket
        self.changed.unpark_all()
        schedule = self.calls.schedule
        if not schedule.idle and not self._shared.connections.detach(self):  # (idle: it ends at once)
            throttled_log.warning("detached", "too many connections run on for clients that left; cancelling")
            schedule.cancel_everything()

    def _close(self) -> None:
        self._unwatch_hangup()
        self.stream.socket.close()

    def _peer_closed(self) -> bool:
        """After EOF: did the peer close entirely (POLLHUP), not just shut its write side?"""
        fd = self.stream.socket.fileno()
        if fd < 0:
            return True
        poller = select.poll()
        poller.register(fd, select.POLLHUP)
        return any(ev & select.POLLHUP for _, ev in poller.poll(0))

    def _watch_hangup(self) -> None:
        fd = self.stream.socket.fileno()
        if self._hangup_fd < 0 and self._shared.hangups.watch(fd, self._gone):
            self._hangup_fd = fd

    def _unwatch_hangup(self) -> None:
        if self._hangup_fd >= 0:
            self._shared.hangups.unwatch(self._hangup_fd)
            self._hangup_fd = -1

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
        writer = self.writer
        stalled = writer.writing
        progress = (self.reads, writer.writes)
        if progress != self._seen or not (stalled or self._idle()):
            self._seen, self._quiet_ticks = progress, 0
        else:
            self._quiet_ticks += 1
        reading_a_line = self.reading and not self._paused and not stalled and self._mid_message()
        if not reading_a_line or self.messages != self._line_seen:
            self._line_seen, self._line_ticks = (self.messages if reading_a_line else -1), 0
        else:
            self._line_ticks += 1
        timeout = self._limits.idle_timeout
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
        return self.calls.schedule.idle and not self.outbox.subscriptions
