"""A real UNIX listener whose accept queue is full, for the clients' connect tests (issue 9, 13).

``listen(0)`` leaves room for one queued connection on Linux; :class:`FullBacklog` fills it with
connections nobody accepts, so the next ``connect`` finds the queue full (EAGAIN), as it would
on a server that is overloaded or stuck. The test frees room with :meth:`FullBacklog.free_one`
once it has seen the client waiting, never after a sleep.
"""

from __future__ import annotations

import platform
import socket
import threading
from pathlib import Path
from types import TracebackType

__all__ = ["FullBacklog", "waiting_in_connect"]

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
