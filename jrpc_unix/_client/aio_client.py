"""``jrpc_unix.aio.open_client``: the :class:`~.trio_client.AsyncClient` front over asyncio.

The client's methods are the trio client's (``call``, ``notify``, ``batch``, ``send``,
``subscribe``, ``wait_notification``), driven by :class:`~.aio_io.AsyncioTransport`. Bound waits
with ``asyncio.timeout``; a task cancelled mid-call sends ``rpc.cancel`` and leaves the
connection usable.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from .._wire.client_framing import ClientFraming
from .._wire.conversation import DEFAULT_MAX_ANSWER, Conversation
from .aio_io import AsyncioTransport, connect_unix
from .trio_client import AsyncClient
from .waiting import CLIENT_CLOSED

__all__ = ["client_over", "open_client"]


@asynccontextmanager
async def open_client(
    path: str | os.PathLike[str],
    *,
    connect_timeout: float | None = 30.0,
    max_message_size: int = DEFAULT_MAX_ANSWER,
    framing: str = "newline",
) -> AsyncIterator[AsyncClient]:
    """Connect to the server at ``path`` from asyncio; the connection closes when the block ends.

    While the server's accept queue is full, connecting is retried for up to ``connect_timeout``
    seconds (None: until cancelled), then raises ConnectError. ``framing`` as for
    :class:`~jrpc_unix.Client` (``"unixsock"``: a server of the Go original).
    """
    translate = None if framing == "newline" else ClientFraming(framing, max_message_size)
    address = os.fspath(path)
    sock = await connect_unix(address, connect_timeout)
    try:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    async with client_over(address, reader, writer, max_message_size, translate) as client:
        yield client


@asynccontextmanager
async def client_over(
    address: str,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    max_message_size: int = DEFAULT_MAX_ANSWER,
    framing: ClientFraming | None = None,
) -> AsyncIterator[AsyncClient]:
    """An AsyncClient over any connected asyncio streams (closed when the block ends: a UNIX
    socket's, a process's pipes), its reader task running for the block. ``address`` names it
    in messages; ``framing`` translates the bytes each way (None: newline JSON)."""
    transport = AsyncioTransport(address, reader, writer, Conversation(max_message_size), framing)
    reading = asyncio.get_running_loop().create_task(transport.read_loop())
    try:
        yield AsyncClient(transport)
    finally:
        transport.shut(CLIENT_CLOSED)
        reading.cancel()
        writer.close()
        await asyncio.wait([reading])  # not `await reading`: its CancelledError is not ours
