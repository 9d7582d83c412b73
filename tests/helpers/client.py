"""Helpers for the client tests: a listener whose accept queue is full, a watch on progress
reports, and the lines a server sends, for the sans-IO conversation's tests.

A real UNIX listener whose accept queue is full, for the clients' connect tests (issue 9, 13):
``listen(0)`` leaves room for one queued connection on Linux; :class:`FullBacklog` fills it with
connections nobody accepts, so the next ``connect`` finds the queue full (EAGAIN), as it would
on a server that is overloaded or stuck. The test frees room with :meth:`FullBacklog.free_one`
once it has seen the client waiting, never after a sleep.
"""

from __future__ import annotations

import json
import platform
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from jrpc_unix._wire.conversation import Exchange
from jrpc_unix._wire.messages import encode_error, encode_result

__all__ = [
    "FullBacklog",
    "ReportWatch",
    "dropped_line",
    "error_line",
    "event_line",
    "result_line",
    "sent",
    "waiting_in_connect",
]

#: connect(2)'s number, for kernels that hide ``wchan``.
_CONNECT_SYSCALL = {"x86_64": "42", "aarch64": "203"}


class FullBacklog:
    """A listening socket at ``path`` that never accepts on its own, its queue filled."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(0)
        self.fillers: list[socket.socket] = []
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.connect(path)
            except BlockingIOError:
                sock.close()
                break
            self.fillers.append(sock)
        assert self.fillers, "listen(0) should leave room for one connection"

    def free_one(self) -> None:
        """Accept one queued filler: room for one more connection."""
        self.listener.accept()[0].close()

    def close(self) -> None:
        for sock in [*self.fillers, self.listener]:
            sock.close()

    def __enter__(self) -> FullBacklog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def waiting_in_connect(thread: threading.Thread) -> bool:
    """Whether ``thread`` sleeps in the kernel waiting for room in a UNIX accept queue (False
    once it has ended)."""
    task = Path(f"/proc/self/task/{thread.native_id}")
    try:
        wchan = (task / "wchan").read_text().strip()
        if wchan not in ("", "0"):
            return wchan == "unix_wait_for_peer"
        return (task / "syscall").read_text().split()[0] == _CONNECT_SYSCALL[platform.machine()]
    except FileNotFoundError:
        return False


class ReportWatch:
    """A ``progress`` callback that notes, at each report, how many reports the call's exchange
    still holds (issue 9, 14: it must not keep those already handed on).

    It wraps ``client._conv.call`` (either client's) to see the exchanges the calls open.
    """

    def __init__(self, client: Any) -> None:
        self.exchanges: list[Exchange] = []
        self.kept: list[int] = []
        make_call = client._conv.call

        def call(*args: Any, **kwargs: Any) -> tuple[Exchange, bytes]:
            exchange, data = make_call(*args, **kwargs)
            self.exchanges.append(exchange)
            return exchange, data

        client._conv.call = call

    def __call__(self, done: Any, total: Any, message: Any) -> None:
        reports = self.exchanges[-1].reports
        assert reports is not None
        self.kept.append(len(reports))

    def assert_forgotten(self, client: Any, reads: int) -> None:
        """After one call: nothing kept, and never more than ``reads`` reads' worth held."""
        assert client._conv.feeds.progress is not None
        assert not client._conv.feeds.progress.events  # the client's own feed keeps no events
        assert len(self.kept) > 1000  # the server drops reports only for a reader that falls behind
        (exchange,) = self.exchanges
        assert exchange.reports is not None
        assert not exchange.reports
        assert max(self.kept) < reads * 65536 // 100  # a read takes 64 KiB; a report is over 100 bytes


# -- what the server sends, as lines (answers by the server's own encoders) --------------------


def sent(data: bytes) -> Any:
    """The one message in ``data``, parsed: a message is one line."""
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1, "one message is one line"
    return json.loads(data)


def result_line(rid: Any, value: Any) -> bytes:
    return encode_result(rid, value) + b"\n"


def error_line(rid: Any, code: int, message: str | None = None, data: Any = None) -> bytes:
    if data is None:
        return encode_error(rid, code, message) + b"\n"
    return encode_error(rid, code, message, data) + b"\n"


def event_line(sub: str, data: Any, topic: str = "t") -> bytes:
    params = {"subscription": sub, "topic": topic, "data": data}
    return json.dumps({"jsonrpc": "2.0", "method": "rpc.event", "params": params}).encode() + b"\n"


def dropped_line(sub: str, count: int, topic: str = "t") -> bytes:
    params = {"subscription": sub, "topic": topic, "count": count}
    return json.dumps({"jsonrpc": "2.0", "method": "rpc.dropped", "params": params}).encode() + b"\n"
