"""In-trio test servers: a raw client per test, sample methods, one connection without a listener.

:func:`helpers.serving` starts a whole server on a socket path; :func:`connection_pair` serves one
:class:`~jrpc_unix._server.connection.Connection` over a socketpair, with the server's shared
state but no listener, admission or accept loop, so the calls' schedule can be driven and
inspected directly (tests/server/test_schedule.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
from collections.abc import AsyncIterator
from typing import Any, Unpack

import trio

from helpers import TrioLineClient
from jrpc_unix import Access, Methods, Peer, Server
from jrpc_unix._server.connection import Connection
from jrpc_unix._server.schedule import Schedule
from jrpc_unix._server.server import ServerOptions


@contextlib.asynccontextmanager
async def connected(path: str) -> AsyncIterator[TrioLineClient]:
    """A raw line client on ``path`` for the body."""
    c = await TrioLineClient.connect(path)
    try:
        yield c
    finally:
        await c.aclose()


def sample_methods() -> Methods:
    """ping, echo(x), nap(seconds) (async), crash (raises)."""
    methods = Methods()

    @methods.add
    def ping() -> str:
        return "pong"

    @methods.add
    def echo(x: Any) -> Any:
        return x

    @methods.add
    async def nap(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    @methods.add
    def crash() -> None:
        raise RuntimeError("crash")

    return methods


def nothing_to_read(c: TrioLineClient) -> bool:
    """True if no answer bytes are waiting (call only once the server is quiescent)."""
    readable, _, _ = select.select([c.stream.socket.fileno()], [], [], 0)
    return not readable and not c._buf


@dataclasses.dataclass
class Pair:
    """A server that does not listen, one of its connections, and that connection's client end."""

    server: Server
    conn: Connection
    client: TrioLineClient

    @property
    def schedule(self) -> Schedule:
        assert self.conn.parts is not None, "no request has come yet"
        return self.conn.parts.calls.schedule


@contextlib.asynccontextmanager
async def connection_pair(
    methods: Methods, *, level: Access = Access.ADMIN, **options: Unpack[ServerOptions]
) -> AsyncIterator[Pair]:
    """One server connection over a socketpair, served for the body, with its client end.

    The server never listens: no socket file, no accept loop, no admission; its ``stop()``
    still reaches the connection. The client end is closed on exit, after which the
    connection ends as for any peer that left.
    """
    server = Server(methods, **options)
    shared = server._shared  # what Server.serve would hand each connection it accepts
    shared.loop.enter()  # this run is the server's: the hop onto its loop
    ours, theirs = trio.socket.socketpair()
    peer = Peer(os.getpid(), os.getuid(), os.getgid())
    conn = Connection(shared, trio.SocketStream(ours), peer, level)
    client = TrioLineClient(trio.SocketStream(theirs))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(conn.serve)  # as Server._serve_connection has it for each accepted connection
        try:
            yield Pair(server, conn, client)
        finally:
            await client.aclose()
