"""jrpc-unix in an asyncio program: serve the control socket on the running loop, and call it.

::

    async def main() -> None:
        async with jrpc_unix.aio.serving("/run/app/ctl.sock", methods) as server:
            await app.run()                 # the app's own work, on the same loop
            server.publish("events", {...})  # from asyncio code too

    async with jrpc_unix.aio.open_client("/run/app/ctl.sock") as client:
        print(await client.call("ping"))

The server is trio's, run as a guest of the asyncio loop (``trio.lowlevel.start_guest_run``):
on the loop's own thread, with no second event loop thread. Plain function handlers run on the
asyncio loop's thread, ``async def`` handlers are asyncio coroutines awaited on the app's loop,
``blocking=True`` handlers run in a worker thread; ``current_context()`` works in all three
(specs/protocol.md, "Which loop runs a handler"). Works with uvloop too.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Unpack

from ._client.aio_client import open_client
from ._server.aio import guest_serving
from ._server.server import Server, ServerOptions
from ._service.methods import Methods

__all__ = ["open_client", "serve", "serving"]


async def serve(
    path: str, methods: Methods | Mapping[str, Callable[..., Any]], **options: Unpack[ServerOptions]
) -> None:
    """Serve ``methods`` on ``path`` in the running asyncio loop until stopped (:meth:`Server.stop`
    from a handler or from asyncio code). Cancelling the awaiting task stops the server
    gracefully: running calls get ``Limits.shutdown_grace`` to finish, the socket is removed,
    and then the CancelledError goes on. ``options`` are :class:`~jrpc_unix.Server`'s."""
    async with guest_serving(Server(methods, **options), path) as run:
        await run.wait()  # a CancelledError here: guest_serving stops the server and waits


@contextlib.asynccontextmanager
async def serving(
    path: str, methods: Methods | Mapping[str, Callable[..., Any]], **options: Unpack[ServerOptions]
) -> AsyncIterator[Server]:
    """``async with serving(path, methods) as server:`` serves for the block, listening once it
    is entered (or raising why not, e.g. AddressInUseError); leaving it stops gracefully, as a
    cancelled :func:`serve` does."""
    async with guest_serving(Server(methods, **options), path) as run:
        yield run.server
