"""The trio client: many tasks calling at once over one connection, answers matched by id.

``async with open_client(path) as client`` connects and runs two helper tasks for the block:
a reader that feeds answers to the :class:`~._conversation.Conversation` and wakes the callers
they complete, and a single writer, so writes never interleave and a cancelled caller never
leaves half a request on the wire. Cancelling a waiting call (``trio.fail_after``) only stops
the wait: the request was or will be sent whole, and its late answer is dropped.

As trio asks, no method takes a ``timeout``: wrap calls in ``trio.fail_after``/``move_on_after``.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._connect import connect_address, connect_error
from ._conversation import DEFAULT_MAX_ANSWER, Call, Conversation, Exchange, Notification, make_params
from ._errors import ConnectionClosedError, JrpcUnixError, ProtocolError
from ._response import Response
from ._sync_client import MAX_KEPT_NOTIFICATIONS, _seed_params, response_from

__all__ = ["AsyncClient", "open_client"]

_CLIENT_CLOSED = "the client was closed"


class _Outgoing:
    __slots__ = ("data", "sent", "settled")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.sent = False
        self.settled = trio.Event()  # written, or never will be


class AsyncClient:
    """One connection to a server; get one from :func:`open_client`. Safe for many tasks."""

    def __init__(
        self, path: str, stream: trio.SocketStream, max_message_size: int = DEFAULT_MAX_ANSWER
    ) -> None:
        self.path = path
        self._stream = stream
        self._conv = Conversation(max_message_size)
        self._waiters: dict[Exchange, trio.Event] = {}
        self._send_queue, self._queued = trio.open_memory_channel[_Outgoing](math.inf)
        self._closed: str | ProtocolError | None = None  # why the connection is over
        self._write_failed: str | None = None  # why nothing more can be sent
        self._inbox: collections.deque[Notification] = collections.deque(maxlen=MAX_KEPT_NOTIFICATIONS)
        self._arrived = trio.Event()

    # -- public API ------------------------------------------------------------------------

    async def call(self, method: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` and return its result; raises RpcError if the server answers an error."""
        exchange = await self._exchange(self._conv.call(method, make_params(args, kwargs)))
        return exchange.result()

    async def notify(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        """Send a notification; returns once it is written (no answer ever comes)."""
        await self._write(self._conv.notify(method, make_params(args, kwargs)))

    async def batch(self, *items: Call) -> list[Any]:
        """Send calls and notifications as one message; results in call order.

        A failed call's place holds its RpcError (not raised); notifications have no place.
        """
        exchange, data = self._conv.batch(items)
        if exchange is None:
            await self._write(data)
            return []
        return (await self._exchange((exchange, data))).results()

    async def send(self, cmd: str, args: Any = None, respond: bool = True) -> Response | None:
        """The Go original's ``Send``: a Response for a call, None for ``respond=False``."""
        params = _seed_params(args)
        if not respond:
            await self._write(self._conv.notify(cmd, params))
            return None
        return response_from(await self._exchange(self._conv.call(cmd, params)))

    async def wait_notification(self) -> Notification:
        """The next notification the server sent (``rpc.event`` after ``rpc.subscribe``).

        Kept (the newest 10,000) until taken; raises ConnectionClosedError once the connection
        is over and none are left. Bound the wait with ``trio.fail_after`` if need be.
        """
        while not self._inbox:
            self._check_open()
            await self._arrived.wait()
        return self._inbox.popleft()

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def dropped(self) -> int:
        """How many answers arrived for calls nobody waited for any more (late answers)."""
        return self._conv.dropped

    # -- sending and waiting ---------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed is not None:
            raise self._closed_error()
        if self._write_failed is not None:
            raise ConnectionClosedError(f"{self.path}: {self._write_failed}")

    def _closed_error(self, label: str | None = None) -> JrpcUnixError:
        reason = self._closed
        if isinstance(reason, ProtocolError):
            return ProtocolError(str(reason))
        if label is None:
            if reason == _CLIENT_CLOSED:
                return ConnectionClosedError(f"the client for {self.path} is closed")
            return ConnectionClosedError(f"{self.path}: {reason}")
        said = self._conv.unattributed
        suffix = f" (the server said: {said[-1]})" if said else ""
        return ConnectionClosedError(f"{self.path}: {reason} before answering {label}{suffix}")

    async def _write(self, data: bytes) -> None:
        self._check_open()
        out = _Outgoing(data)
        self._send_queue.send_nowait(out)
        await out.settled.wait()
        if not out.sent:
            self._check_open()
            raise ConnectionClosedError(f"{self.path}: the notification was not sent")

    async def _exchange(self, pair: tuple[Exchange, bytes]) -> Exchange:
        exchange, data = pair
        self._check_open()
        done = self._waiters[exchange] = trio.Event()
        try:
            self._send_queue.send_nowait(_Outgoing(data))
            await done.wait()
        finally:
            del self._waiters[exchange]
            if not exchange.done:
                self._conv.abandon(exchange)  # cancelled: a late answer will be dropped
        if not exchange.done:
            raise self._closed_error(exchange.label)
        return exchange

    # -- the helper tasks ------------------------------------------------------------------

    async def _write_loop(self) -> None:
        batch: list[_Outgoing] = []
        try:
            async for out in self._queued:
                batch = [out]
                while True:
                    try:
                        batch.append(self._queued.receive_nowait())
                    except trio.WouldBlock:
                        break
                await self._stream.send_all(b"".join(o.data for o in batch))
                for o in batch:
                    o.sent = True
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

    async def _read_loop(self) -> None:
        conv = self._conv
        try:
            while True:
                data = await self._stream.receive_some(65536)
                for exchange in conv.receive_data(data) if data else conv.receive_eof():
                    self._waiters[exchange].set()  # completed exchanges are always awaited
                if conv.notifications:
                    self._inbox.extend(conv.take_notifications())
                    self._arrived.set()
                    self._arrived = trio.Event()
                if not data:
                    self._shut("the server closed the connection")
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._shut(f"reading failed ({exc or 'connection lost'})")
        except ProtocolError as exc:
            self._shut(exc)

    def _shut(self, reason: str | ProtocolError) -> None:
        """The connection is over: fail every waiting caller and every queued write."""
        if self._closed is None:
            self._closed = reason
        self._send_queue.close()
        for event in self._waiters.values():
            event.set()
        self._arrived.set()
        self._settle_queued()

    def _settle_queued(self) -> None:
        while True:
            try:
                self._queued.receive_nowait().settled.set()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break


@asynccontextmanager
async def open_client(
    path: str | os.PathLike[str], *, max_message_size: int = DEFAULT_MAX_ANSWER
) -> AsyncIterator[AsyncClient]:
    """Connect to the server at ``path``; the connection closes when the block ends."""
    text = os.fspath(path)
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        with connect_address(text) as addr:
            await sock.connect(addr)
    except OSError as exc:
        sock.close()
        raise connect_error(text, exc) from None
    except BaseException:
        sock.close()
        raise
    stream = trio.SocketStream(sock)
    client = AsyncClient(text, stream, max_message_size)
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client._read_loop)
            nursery.start_soon(client._write_loop)
            try:
                yield client
            except BaseException as exc:  # re-raised below, unwrapped by the nursery
                failure = exc
            finally:
                nursery.cancel_scope.cancel()
    finally:
        client._shut(_CLIENT_CLOSED)
        with trio.CancelScope(shield=True):
            await stream.aclose()
    if failure is not None:
        try:
            raise failure
        finally:
            failure = None
