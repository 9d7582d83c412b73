"""Helpers for the client tests: either client behind one awaitable face (the shared-contract
tests), a scripted peer, a listener whose accept queue is full, a watch on progress reports, and
the lines a server sends, for the sans-IO conversation's tests.

A real UNIX listener whose accept queue is full, for the clients' connect tests (issue 9, 13):
``listen(0)`` leaves room for one queued connection on Linux; :class:`FullBacklog` fills it with
connections nobody accepts, so the next ``connect`` finds the queue full (EAGAIN), as it would
on a server that is overloaded or stuck. The test frees room with :meth:`FullBacklog.free_one`
once it has seen the client waiting, never after a sleep.
"""

from __future__ import annotations

import functools
import json
import platform
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

import trio

from helpers import TIMEOUT
from helpers.aio import asyncio_client
from jrpc_unix import Client, open_client
from jrpc_unix._wire.conversation import Exchange
from jrpc_unix._wire.messages import encode_error, encode_result

__all__ = [
    "DRIVERS",
    "FullBacklog",
    "ReportWatch",
    "ScriptedPeer",
    "connected",
    "dropped_line",
    "error_line",
    "event_line",
    "result_line",
    "sent",
    "waiting_in_connect",
]

#: The three clients, for ``pytest.mark.parametrize("driver", DRIVERS)``.
DRIVERS = ["blocking", "trio", "asyncio"]
#: connect(2)'s number, for kernels that hide ``wchan``.
_CONNECT_SYSCALL = {"x86_64": "42", "aarch64": "203"}


@asynccontextmanager
async def connected(driver: str, path: str) -> AsyncIterator[Any]:
    """A client of ``driver`` ("blocking", "trio" or "asyncio") for ``path``, awaited the same way
    each way: ``await c.call("ping")``, ``async with c.subscription("config") as sub: await
    sub.next()``. The blocking client's methods run in a worker thread, the asyncio client's on an
    asyncio loop in a thread (helpers.aio); closed when the block ends."""
    if driver == "blocking":
        with Client(path, timeout=TIMEOUT) as client:
            yield _Blocking(client)
    elif driver == "asyncio":
        async with asyncio_client(path) as aio_client:
            yield aio_client
    else:
        async with open_client(path) as trio_client:
            yield _Trio(trio_client)


class _Blocking:
    def __init__(self, client: Client) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.client, name)

        async def in_a_thread(*args: Any, **kwargs: Any) -> Any:
            return await trio.to_thread.run_sync(functools.partial(method, *args, **kwargs))

        return in_a_thread

    @asynccontextmanager
    async def subscription(self, topic: str, **params: Any) -> AsyncIterator[Any]:
        sub = await trio.to_thread.run_sync(functools.partial(self.client.subscribe, topic, **params))
        try:
            yield _BlockingSubscription(sub)
        finally:
            await trio.to_thread.run_sync(sub.close)


class _BlockingSubscription:
    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def __getattr__(self, name: str) -> Any:  # id, topic, dropped, closed
        return getattr(self.sub, name)

    async def next(self) -> Any:
        """The next event's data, or None once closed."""
        return await trio.to_thread.run_sync(next, self.sub, None)

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.sub.close)


class _Trio:
    def __init__(self, client: Any) -> None:
        self.client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    @asynccontextmanager
    async def subscription(self, topic: str, **params: Any) -> AsyncIterator[Any]:
        async with self.client.subscribe(topic, **params) as sub:
            yield _TrioSubscription(sub)


class _TrioSubscription:
    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sub, name)

    async def next(self) -> Any:
        return await anext(self.sub, None)

    async def close(self) -> None:
        await self.sub.aclose()


class ScriptedPeer:
    """A server on a real socket, in a thread, that runs ``script(peer, conn)`` for each
    connection it accepts: it answers exactly what a test needs (garbage, a close mid-call)."""

    def __init__(
        self, path: str, script: Callable[[ScriptedPeer, socket.socket], None], connections: int = 1
    ) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(TIMEOUT)
        self.received: list[bytes] = []
        self._script = script
        self._thread = threading.Thread(target=self._run, args=(connections,), daemon=True)
        self._thread.start()

    def _run(self, connections: int) -> None:
        for _ in range(connections):
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                self._script(self, conn)

    def readline(self, conn: socket.socket) -> bytes:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                break
            data += chunk
        self.received.append(data)
        return data

    def close(self) -> None:
        self._thread.join(TIMEOUT)
        self.sock.close()

    def __enter__(self) -> ScriptedPeer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class FullBacklog:
    """A listening socket at ``path`` that never accepts on its own, its queue filled."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(0)
        self.fillers: list[socket.socket] = []
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(path)
            except BlockingIOError:
                sock.close()
                break
            self.fillers.append(sock)
        assert self.fillers, "listen(0) should leave room for one connection"

    def free_one(self) -> None:
        """Accept one queued filler: room for one more connection."""
        self.listener.accept()[0].close()

    def close(self) -> None:
        for sock in [*self.fillers, self.listener]:
            sock.close()

    def __enter__(self) -> FullBacklog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def waiting_in_connect(thread: threading.Thread) -> bool:
    """Whether ``thread`` sleeps in the kernel waiting for room in a UNIX accept queue (False
    once it has ended)."""
    task = Path(f"/proc/self/task/{thread.native_id}")
    try:
        wchan = (task / "wchan").read_text().strip()
        if wchan not in ("", "0"):
            return wchan == "unix_wait_for_peer"
        return (task / "syscall").read_text().split()[0] == _CONNECT_SYSCALL[platform.machine()]
    except FileNotFoundError:
        return False


class ReportWatch:
    """A ``progress`` callback that notes, at each report, how many reports the call's exchange
    still holds (issue 9, 14: it must not keep those already handed on).

    It wraps ``client._conv.call`` (either client's) to see the exchanges the calls open.
    """

    def __init__(self, client: Any) -> None:
        self.exchanges: list[Exchange] = []
        self.kept: list[int] = []
        make_call = client._conv.call

        def call(*args: Any, **kwargs: Any) -> tuple[Exchange, bytes]:
            exchange, data = make_call(*args, **kwargs)
            self.exchanges.append(exchange)
            return exchange, data

        client._conv.call = call

    def __call__(self, done: Any, total: Any, message: Any) -> None:
        reports = self.exchanges[-1].reports
        assert reports is not None
        self.kept.append(len(reports))

    def assert_forgotten(self, client: Any, reads: int) -> None:
        """After one call: nothing kept, and never more than ``reads`` reads' worth held."""
        assert client._conv.feeds.progress is not None
        assert not client._conv.feeds.progress.events  # the client's own feed keeps no events
        assert len(self.kept) > 1000  # the server drops reports only for a reader that falls behind
        (exchange,) = self.exchanges
        assert exchange.reports is not None
        assert not exchange.reports
        assert max(self.kept) < reads * 65536 // 100  # a read takes 64 KiB; a report is over 100 bytes


# -- what the server sends, as lines (answers by the server's own encoders) --------------------


def sent(data: bytes) -> Any:
    """The one message in ``data``, parsed: a message is one line."""
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1, "one message is one line"
    return json.loads(data)


def result_line(rid: Any, value: Any) -> bytes:
    return encode_result(rid, value) + b"\n"


def error_line(rid: Any, code: int, message: str | None = None, data: Any = None) -> bytes:
    if data is None:
        return encode_error(rid, code, message) + b"\n"
    return encode_error(rid, code, message, data) + b"\n"


def event_line(sub: str, data: Any, topic: str = "t") -> bytes:
    params = {"subscription": sub, "topic": topic, "data": data}
    return json.dumps({"jsonrpc": "2.0", "method": "rpc.event", "params": params}).encode() + b"\n"


def dropped_line(sub: str, count: int, topic: str = "t") -> bytes:
    params = {"subscription": sub, "topic": topic, "count": count}
    return json.dumps({"jsonrpc": "2.0", "method": "rpc.dropped", "params": params}).encode() + b"\n"
