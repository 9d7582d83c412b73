"""The trio client's transport: one reader task, one writer task, waiting callers.

:class:`TrioTransport` owns a stream and drives the :class:`~.._wire.conversation.Conversation`:
the reader feeds it what arrives and matches the events it returns, waking whoever they
concern (callers, subscription readers, notification waiters); the single writer sends queued
messages whole, in order, so writes never interleave and a cancelled caller never leaves half a
request on the wire. Any ``trio.abc.Stream`` will do; :func:`connect_unix` opens a UNIX socket.

A caller that gives up (cancelled) stops the server's work too: a request still queued is
withdrawn (never sent); one already written is followed by ``rpc.cancel``, queued without
waiting, so cancellation is never delayed. Its late answer is dropped.
"""

from __future__ import annotations

import contextlib
import math
import socket

import trio

from .._errors import ConnectError, ConnectionClosedError, JrpcUnixError, ProtocolError
from .._wire.conversation import Conversation, Exchange
from .connect import connecting
from .waiting import CLIENT_CLOSED, WaitingCallers

__all__ = ["CLIENT_CLOSED", "TrioTransport", "connect_unix"]

_QUEUED, _WRITING, _SENT, _WITHDRAWN = range(4)


class _Outgoing:
    """One message for the writer, and whether it went out."""

    __slots__ = ("data", "settled", "state")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.state = _QUEUED
        self.settled = trio.Event()  # written, or never will be


class TrioTransport(WaitingCallers):
    """One connection's reader, writer and waiting callers (an :class:`~.transport.AsyncTransport`).

    Run :meth:`read_loop` and :meth:`write_loop` in a nursery for as long as it is used, and
    :meth:`shut` it afterwards.
    """

    def __init__(self, address: str, stream: trio.abc.Stream, conversation: Conversation) -> None:
        super().__init__(address, conversation, trio.Event)
        self.progress_lock = trio.Lock()
        self._stream = stream
        self._send_queue, self._queued = trio.open_memory_channel[_Outgoing](math.inf)

    # -- what callers wait for -------------------------------------------------------------

    async def exchange(self, pair: tuple[Exchange, bytes]) -> Exchange:
        exchange, data = pair
        wake = self._expect(exchange)
        out = _Outgoing(data)
        try:
            self._send_queue.send_nowait(out)
            await self._wait_answered(exchange, wake)
        finally:
            sent = out.state != _QUEUED
            if not sent and not exchange.done:
                out.state = _WITHDRAWN  # never sent: the writer skips it
            self._given_up(exchange, sent)
        return self._answered(exchange)

    async def send(self, data: bytes) -> None:
        self._check_open()
        out = _Outgoing(data)
        self._send_queue.send_nowait(out)
        await out.settled.wait()
        if out.state != _SENT:
            self._check_open()
            raise ConnectionClosedError(f"{self.address}: the notification was not sent")

    def send_soon(self, data: bytes) -> None:
        if self._closed is None and self._write_failed is None:
            with contextlib.suppress(trio.ClosedResourceError, trio.BrokenResourceError):
                self._send_queue.send_nowait(_Outgoing(data))

    # -- the helper tasks ------------------------------------------------------------------

    async def write_loop(self) -> None:
        batch: list[_Outgoing] = []
        try:
            async for out in self._queued:
                batch = [out]
                while True:
                    try:
                        batch.append(self._queued.receive_nowait())
                    except trio.WouldBlock:
                        break
                batch = [o for o in batch if o.state == _QUEUED]  # withdrawn ones are skipped
                for o in batch:
                    o.state = _WRITING
                if batch:
                    await self._stream.send_all(b"".join(o.data for o in batch))
                for o in batch:
                    o.state = _SENT
                    o.settled.set()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            # Callers keep waiting: the reader still delivers what the server said before it
            # closed (an overloaded server's refusal), then ends them at EOF.
            self._write_failed = f"writing failed ({exc or 'connection lost'})"
            self._send_queue.close()
            self._settle_queued()
        finally:
            for o in batch:
                o.settled.set()

    async def read_loop(self) -> None:
        try:
            while True:
                data = bytes(await self._stream.receive_some(65536))  # the same object if bytes
                self._received(data)
                if not data:
                    self.shut("the server closed the connection")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.shut(f"reading failed ({exc or 'connection lost'})")
        except (ProtocolError, ConnectError) as exc:  # ConnectError: ssh failed (ssh_trio.py)
            self.shut(exc)

    def shut(self, reason: str | JrpcUnixError) -> None:
        """The connection is over: fail every waiting caller, reader and queued write."""
        self._end(reason)
        self._send_queue.close()
        self._settle_queued()

    def _settle_queued(self) -> None:
        while True:
            try:
                self._queued.receive_nowait().settled.set()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break


async def connect_unix(address: str, connect_timeout: float | None) -> trio.SocketStream:
    """Connect to ``address``, retrying while its accept queue is full (EAGAIN), up to
    ``connect_timeout`` (see :func:`~.connect.connecting`)."""
    await trio.lowlevel.checkpoint()
    with contextlib.closing(connecting(address, connect_timeout, trio.current_time)) as steps:
        for step in steps:
            if isinstance(step, socket.socket):
                return trio.SocketStream(trio.socket.from_stdlib_socket(step))
            await trio.sleep(step)
    raise AssertionError("connecting() ends with the socket")
