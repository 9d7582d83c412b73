"""Run a server in a background thread, for programs that are not trio programs.

The Go original's ``go server.New(...)`` plus ``srv.Stop()``: :func:`serve_in_thread` returns
once the socket is listening (or raises why it could not), and :meth:`ServerThread.stop` stops
the server gracefully from any thread and waits for the thread to end. No polling, no spinning:
the stop request travels into trio with ``trio.from_thread``.

``stop`` is safe at any moment: before ``start`` (the server never serves), racing ``start``
(a lock orders the two: either the thread sees the request before it serves and ends, or
``stop`` sees the running loop and stops the server, which then ends at once even if it was
still setting up), twice, or from a handler: from the server's own threads (a plain handler on
its event loop, a ``blocking=True`` one in a worker thread) it only asks, since waiting there
for the server's end would wait for the handler itself.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Unpack

import trio

from .._service.methods import Methods
from .server import Server, ServerOptions

__all__ = ["ServerThread", "serve_in_thread"]


class ServerThread:
    """A server running in its own thread; a context manager that stops it on exit."""

    def __init__(self, server: Server, path: str) -> None:
        self.server = server
        self.path = path
        self._lock = threading.Lock()  # orders stop() against the thread's start of serving
        self._stop_requested = False
        self._token: trio.lowlevel.TrioToken | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"jrpc-unix {path}", daemon=True)

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the starter, or kept for join()
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        with self._lock:
            if self._stop_requested:
                return  # stopped before it served
            self._token = trio.lowlevel.current_trio_token()
        await self.server.serve(self.path, task_status=self)

    def started(self, value: object = None) -> None:
        """The server is listening (``serve`` calls this as its task status)."""
        self._ready.set()

    def start(self) -> None:
        """Serve, returning once listening (at once if :meth:`stop` came first); raise why not."""
        with self._lock:  # a stop() from now on sees a started thread, and waits for it
            if self._stop_requested:
                return
            self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def stop(self, timeout: float | None = None) -> None:
        """Stop gracefully and wait for the thread (idempotent; safe from any thread, any time)."""
        with self._lock:
            self._stop_requested = True
            token = self._token
        if threading.current_thread() is self._thread:  # a handler on the server's event loop
            self.server.stop()
            return
        if token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(self.server.stop, trio_token=token)
            if _worker_of(token):
                return
        self.join(timeout)

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end (at once if it never started)."""
        if self._thread.ident is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _worker_of(token: trio.lowlevel.TrioToken) -> bool:
    """Is this thread one of ``token``'s run's worker threads (a ``blocking=True`` handler)?"""
    try:
        return trio.from_thread.run_sync(trio.lowlevel.current_trio_token) is token
    except (RuntimeError, trio.RunFinishedError):  # not a trio worker thread; or the run is over
        return False


def serve_in_thread(
    path: str, methods: Methods | Mapping[str, Callable[..., Any]], **options: Unpack[ServerOptions]
) -> ServerThread:
    """Start serving ``methods`` on ``path`` in a background thread; returns once listening."""
    handle = ServerThread(Server(methods, **options), path)
    handle.start()
    return handle
