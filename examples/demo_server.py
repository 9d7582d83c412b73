"""The reference jrpc-unix service: a process you can steer and watch through a UNIX socket.

    python examples/demo_server.py /tmp/demo.sock [--settings-file FILE]
    python examples/demo_server.py --asyncio /tmp/demo.sock    # as an asyncio program's guest
    python examples/demo_server.py --uvloop /tmp/demo.sock     # the same on uvloop

Then, from another shell::

    echo '{"jsonrpc":"2.0","method":"ping","id":1}' | socat - UNIX-CONNECT:/tmp/demo.sock

It runs until SIGTERM or SIGINT (or SIGHUP, SIGQUIT), then lets in-flight calls finish, removes
the socket file and exits 0. Tests, benchmarks and the documentation all drive this service.

Its methods, topics and state (a config and a counter) live in ``jrpc_unix/demo.py``, so that
``jrpc-unix demo`` and ``jrpc-unix serve jrpc_unix.demo:methods SOCK`` work from any install,
not only from a source checkout; this file runs them as a standalone service. With
``--settings-file FILE`` its typed settings are loaded from FILE before the socket accepts, and
``settings.set(..., persist=true)`` writes there (without it nothing is persisted).
"""

from __future__ import annotations

import logging
import sys

from jrpc_unix import JrpcUnixError, run
from jrpc_unix.demo import config, methods, settings

__all__ = ["config", "main", "methods"]


def main(argv: list[str]) -> int:
    host = argv.pop(0) if argv and argv[0] in ("--asyncio", "--uvloop") else None
    if len(argv) == 3 and argv[1] == "--settings-file":
        argv, settings_file = argv[:1], argv[2]
    else:
        settings_file = None
    if len(argv) != 1:
        print(
            "usage: demo_server.py [--asyncio | --uvloop] SOCKET_PATH [--settings-file FILE]", file=sys.stderr
        )
        return 2
    if settings_file is not None:
        settings.load(settings_file)
    if host is None:
        run(argv[0], methods)  # logs to stderr; a start-up failure: one line, exit 1
        return 0
    # asyncio's host has no run(): the same log format and one-line failure, by hand
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        serve_on_asyncio(argv[0], uvloop=host == "--uvloop")
    except JrpcUnixError as exc:  # e.g. another server is live on the path: say so, exit 1
        print(f"jrpc-unix: cannot serve on {argv[0]}: {exc}", file=sys.stderr)
        return 1
    return 0


def serve_on_asyncio(path: str, uvloop: bool) -> None:
    """``jrpc_unix.aio.serve`` on asyncio's loop (or uvloop's) until a stop signal, then stop
    gracefully (cancelling the serving task drains the calls and removes the socket)."""
    import asyncio
    import contextlib
    import signal

    from jrpc_unix.aio import serve

    async def serve_until_signalled() -> None:
        serving = asyncio.current_task()
        assert serving is not None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
            loop.add_signal_handler(signum, serving.cancel)
        with contextlib.suppress(asyncio.CancelledError):  # stopped by a signal, gracefully
            await serve(path, methods)

    if uvloop:
        import uvloop as uv

        uv.run(serve_until_signalled())
    else:
        asyncio.run(serve_until_signalled())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
