"""One connection's life (jrpc_unix._server.connection): reading pauses for a client that does
not read its answers, and resumes when it does."""

from __future__ import annotations

import trio
import trio.lowlevel
import trio.testing
from helpers import (
    TIMEOUT,
    TrioLineClient,
    lines,
    request,
    serving,
)
from helpers.server import connected

from jrpc_unix import (
    Limits,
    Methods,
)


async def test_slow_reader_gets_back_pressure(sock_path: str) -> None:
    """A client that sends much and reads nothing: the server stops reading from it.

    Answers come from tasks (async handler), so the reader is not itself stuck writing; only
    ``max_pending_output`` stops it from reading on and queueing answers without bound.
    """
    methods = Methods()

    @methods.add
    async def blob(i: int) -> str:
        await trio.lowlevel.checkpoint()
        return "x" * 500

    payload = lines(*(request("blob", [i], i) for i in range(20_000)))  # ~1 MB in, ~10 MB out
    limits = Limits(max_pending_output=64 * 1024, shutdown_grace=2)
    sent = trio.Event()

    async def send_all(c: TrioLineClient) -> None:
        await c.send(payload)
        sent.set()

    async with (
        serving(sock_path, methods, limits=limits),
        connected(sock_path) as c,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(send_all, c)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set()  # the server stopped reading: our send is stuck
        seen = 0
        with trio.fail_after(TIMEOUT):
            while seen < 20_000:
                await c.readline()
                seen += 1
            await sent.wait()
