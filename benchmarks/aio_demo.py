"""The demo service hosted by an asyncio program (``jrpc_unix.aio``, trio as asyncio's guest).

    python benchmarks/aio_demo.py SOCKET_PATH [--uvloop]

The same methods and limits as the harness's trio-hosted ``demo`` (connection limits raised for
the idle modes), so the two columns differ only in the host: what guest mode costs per wake-up.
SIGTERM stops it gracefully, as ``run`` does for the trio-hosted demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from jrpc_unix import Limits
from jrpc_unix.aio import serve
from jrpc_unix.demo import methods


async def main(path: str) -> None:
    task = asyncio.current_task()
    assert task is not None
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(path, methods, limits=Limits(max_connections=10100, max_connections_per_uid=10100))


if __name__ == "__main__":
    if "--uvloop" in sys.argv[2:]:
        import uvloop

        uvloop.run(main(sys.argv[1]))
    else:
        asyncio.run(main(sys.argv[1]))
