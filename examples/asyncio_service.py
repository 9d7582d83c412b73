"""An asyncio service with a control socket: its main job is HTTP, its knobs are JSON-RPC.

    python examples/asyncio_service.py /tmp/app.sock [PORT]

The main job is a tiny HTTP server on 127.0.0.1:PORT (0: any free port; the log says which)
written with plain asyncio streams, as any asyncio program's own work would be. The control
socket (``jrpc_unix.aio``) runs on the same event loop, with no second thread:

* ``app.settings`` / ``app.set``: the live settings (the greeting, a delay per request). Plain
  handlers, so they run on the loop's thread and change the app's state directly.
* ``app.counters``: requests served, in flight, per path.
* ``app.drain``: an ``async def`` handler, so an asyncio coroutine: it waits (on an
  ``asyncio.Condition`` of the app) until no request is in flight, reporting progress.
* the ``requests`` topic: the app publishes every request it served (``server.publish`` from
  asyncio code).

Try it with ``examples/asyncio_client.py /tmp/app.sock``, ``jrpc-unix call /tmp/app.sock
app.counters`` or socat. SIGTERM or Ctrl-C stops gracefully: the control socket drains its
calls and removes its file, then the HTTP server closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections import Counter
from typing import Any

from jrpc_unix import Methods, Server, current_context
from jrpc_unix.aio import serving

log = logging.getLogger("asyncio_service")


class App:
    """The program's state: what the control socket shows and steers."""

    def __init__(self) -> None:
        self.settings: dict[str, Any] = {"greeting": "hello", "delay": 0.0}
        self.served = 0
        self.by_path: Counter[str] = Counter()
        self.in_flight = 0
        self.idle = asyncio.Condition()
        self.server: Server | None = None  # the control server, to publish to

    async def handle_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One HTTP/1.0-style request: read the request line and headers, answer, close."""
        self.in_flight += 1
        try:
            request_line = (await reader.readline()).decode("latin-1").split()
            while (await reader.readline()).strip():
                pass  # the headers: not needed here
            path = request_line[1] if len(request_line) > 1 else "/"
            await asyncio.sleep(self.settings["delay"])
            body = f"{self.settings['greeting']} from {path}\n".encode()
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            self.served += 1
            self.by_path[path] += 1
            if self.server is not None:
                self.server.publish("requests", {"path": path, "served": self.served})
        finally:
            writer.close()
            self.in_flight -= 1
            async with self.idle:
                self.idle.notify_all()


def control_methods(app: App) -> Methods:
    methods = Methods()
    methods.add_topic("requests", "every HTTP request served: its path and the count so far")

    @methods.add("app.settings")
    def settings() -> dict[str, Any]:
        """The live settings."""
        return app.settings

    @methods.add("app.set")
    def set_(key: str, value: Any) -> dict[str, Any]:
        """Change a setting at once: the next request uses it."""
        if key not in app.settings:
            raise ValueError(f"no setting {key!r}; settings: {', '.join(app.settings)}")
        if key == "delay" and (type(value) not in (int, float) or not 0 <= value <= 10):
            raise ValueError("delay must be a number of seconds from 0 to 10")
        app.settings[key] = value
        return app.settings

    @methods.add("app.counters")
    def counters() -> dict[str, Any]:
        """Requests served, in flight, and per path."""
        return {"served": app.served, "in_flight": app.in_flight, "by_path": dict(app.by_path)}

    @methods.add("app.drain")
    async def drain() -> int:
        """Wait until no HTTP request is in flight (an asyncio coroutine on the app's loop)."""
        ctx = current_context()
        async with app.idle:
            while app.in_flight:
                ctx.progress(0, None, f"{app.in_flight} in flight")
                await app.idle.wait()
        return app.served

    return methods


async def main(control_path: str, port: int) -> None:
    app = App()
    http = await asyncio.start_server(app.handle_http, "127.0.0.1", port)
    log.info("serving HTTP on port %d", http.sockets[0].getsockname()[1])
    async with serving(control_path, control_methods(app)) as server:  # logs "listening on ..."
        app.server = server
        await http.serve_forever()  # until cancelled (a signal); then the control socket drains


def run(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: asyncio_service.py CONTROL_SOCKET [HTTP_PORT]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    async def until_signalled() -> None:
        task = asyncio.current_task()
        assert task is not None
        for signum in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await main(argv[0], int(argv[1]) if len(argv) == 2 else 0)

    asyncio.run(until_signalled())
    return 0


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
