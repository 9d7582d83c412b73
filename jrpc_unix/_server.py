"""The server: accept connections on a UNIX socket, serve each, stop gracefully.

``await serve(path, methods)`` runs until cancelled or until :meth:`Server.stop`. It works with
``nursery.start``: it reports started only once the socket is listening, with the Server as the
start value. Stop is graceful (hypercorn's model): stop accepting, let in-flight calls finish
until ``Limits.shutdown_grace`` passes (answering requests that arrive meanwhile with "shutting
down"), cancel what still runs, close every connection, remove the socket file.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
from collections.abc import Callable, Mapping
from typing import Any, Literal

import trio

from ._connection import Connection
from ._dispatch import Dispatcher
from ._errors import ErrorCode
from ._limits import Limits
from ._listener import open_unix_listener
from ._methods import Methods, MethodSpec
from ._protocol import encode_error
from ._stats import ServerStats

__all__ = ["Server", "run", "serve", "serve_until_signalled"]

log = logging.getLogger("jrpc_unix.server")

_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}


class Server:
    """A JSON-RPC 2.0 service over a UNIX socket. One Server serves one socket, once."""

    def __init__(
        self,
        methods: Methods | Mapping[str, Callable[..., Any]],
        *,
        limits: Limits | None = None,
        mode: Literal["concurrent", "serial"] = "concurrent",
        socket_mode: int = 0o600,
        socket_gid: int | None = None,
        fast_path: bool = True,
    ) -> None:
        if mode not in ("concurrent", "serial"):
            raise ValueError(f"mode must be 'concurrent' or 'serial', not {mode!r}")
        self.methods = Methods.coerce(methods)
        self.limits = limits or Limits()
        self.serial = mode == "serial"
        self.socket_mode = socket_mode
        self.socket_gid = socket_gid
        self.stats = ServerStats()
        self.dispatcher = Dispatcher(self.methods, extensions=self._extensions(), fast_path=fast_path)
        self.stopping = False
        self._connections: set[Connection] = set()
        self._accept_scope = trio.CancelScope()
        self._work_scope = trio.CancelScope()
        self._started = False

    def _extensions(self) -> dict[str, MethodSpec]:
        """The service's own methods, under the ``rpc.`` names the spec reserves for them."""
        return {}

    def stop(self) -> None:
        """Begin a graceful stop (idempotent); call it from the server's trio thread."""
        if self.stopping:
            return
        self.stopping = True
        self._accept_scope.cancel()
        self._work_scope.deadline = trio.current_time() + self.limits.shutdown_grace
        for conn in list(self._connections):
            conn.wake_for_stop()

    async def serve(
        self, path: str, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``path`` and serve until stopped; see the module docstring."""
        if self._started:
            raise RuntimeError("a Server serves once; create a new one")
        self._started = True
        listener, sockfile = await open_unix_listener(path, mode=self.socket_mode, gid=self.socket_gid)
        try:
            async with listener:
                with self._work_scope:
                    async with trio.open_nursery() as nursery:
                        task_status.started(self)
                        log.info("listening on %s", path)
                        with self._accept_scope:
                            await self._accept_loop(listener, nursery)
                        self.stop()  # accept loop ended: stop gracefully (no-op if stopping)
        finally:
            sockfile.remove()
            log.info("stopped; removed %s", path)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _CAPACITY_ERRNOS:
                    raise
                log.warning("accept failed (%s); retrying in 100 ms", errno.errorcode[exc.errno])
                await trio.sleep(0.1)
                continue
            if len(self._connections) >= self.limits.max_connections:
                self.stats.connections_rejected += 1
                reason = f"too many connections (limit {self.limits.max_connections})"
                nursery.start_soon(self._reject, stream, reason)
                continue
            nursery.start_soon(self._serve_connection, stream)

    async def _reject(self, stream: trio.SocketStream, reason: str) -> None:
        with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError):
            await stream.send_all(encode_error(None, ErrorCode.OVERLOADED, data=reason) + b"\n")
        await stream.aclose()

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = Connection(self, stream)
        self._connections.add(conn)
        self.stats.connections_open += 1
        self.stats.connections_total += 1
        try:
            await conn.serve()
        except Exception:
            log.exception("connection failed")
        finally:
            self._connections.discard(conn)
            self.stats.connections_open -= 1


async def serve(
    path: str,
    methods: Methods | Mapping[str, Callable[..., Any]],
    *,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve ``methods`` on ``path`` until cancelled; ``options`` are :class:`Server`'s."""
    await Server(methods, **options).serve(path, task_status=task_status)



async def serve_until_signalled(server: Server, path: str) -> None:
    """Serve until SIGTERM or SIGINT arrives, then stop gracefully. Main thread only."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, path)
            async for signum in signals:
                log.info("%s received; stopping", signal.Signals(signum).name)
                server.stop()
                break


def run(path: str, methods: Methods | Mapping[str, Callable[..., Any]], **options: Any) -> None:
    """Serve in the foreground until SIGTERM/SIGINT, then stop gracefully and return."""
    trio.run(serve_until_signalled, Server(methods, **options), path)
