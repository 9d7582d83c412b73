"""Steer and watch ``examples/asyncio_service.py`` from asyncio, with ``jrpc_unix.aio.open_client``.

    python examples/asyncio_client.py /tmp/app.sock [EVENTS]

It reads the counters, changes the greeting, drains (an asyncio handler, reporting progress),
then prints the next EVENTS requests the service serves (default 0: none), as they happen.
Any asyncio program calls the same way: ``await client.call(...)``, ``async for`` over a
subscription, ``asyncio.timeout`` to bound a wait (a call cancelled that way sends
``rpc.cancel``; the connection stays usable).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from jrpc_unix.aio import open_client


async def main(path: str, events: int) -> None:
    async with open_client(path) as client:
        print("counters:", await client.call("app.counters"))
        print("settings:", await client.call("app.set", "greeting", "hi"))

        def progress(done: float, total: float | None, message: str | None) -> None:
            print("draining:", message)

        print("drained; served so far:", await client.call("app.drain", progress=progress))
        if events:
            async with client.subscribe("requests") as requests:
                print("watching", flush=True)
                seen: list[Any] = []
                async for event in requests:
                    print("request:", event, flush=True)
                    seen.append(event)
                    if len(seen) == events:
                        break


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: asyncio_client.py CONTROL_SOCKET [EVENTS]")
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 0))
