"""The trio client's stream to an ``ssh://`` address: the ssh process of :mod:`.ssh` under a
``trio.SocketStream``, with ssh's failure quoted and the process reaped when it closes."""

from __future__ import annotations

import contextlib
import math

import trio

from .ssh import CLOSE_WAIT, Log, SshProcess

__all__ = ["SshTrioStream"]


class SshTrioStream(trio.abc.Stream):
    """A ``trio.abc.Stream`` over an ssh process's stdin/stdout.

    An EOF before anything came means ssh or the remote side failed: reading then raises the
    ConnectError quoting ssh's stderr, and the transport ends its callers with it.
    """

    def __init__(self, address: str, connect_timeout: float | None, log: Log | None = None) -> None:
        self._process = SshProcess(address, connect_timeout, log)
        self._stream = trio.SocketStream(trio.socket.from_stdlib_socket(self._process.sock))
        self._heard = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            data = await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError:
            if self._heard:
                raise
            data = b""
        if data:
            self._heard = True
        elif not self._heard:
            await self._ended()
            raise self._process.failure()
        return bytes(data)

    async def _ended(self) -> None:
        """Wait (bounded) for ssh to end, without blocking the other tasks."""
        process = self._process
        with trio.move_on_after(CLOSE_WAIT):
            while process.poll() is None:
                await trio.lowlevel.wait_readable(process.pidfd)

    async def aclose(self) -> None:
        """Shut our writing side, give ssh time to pass on what was written, then end it; when
        the closing task is cancelled (a timeout, Ctrl-C), end it at once."""
        cancelled = trio.current_effective_deadline() == -math.inf
        with trio.CancelScope(shield=True):
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._stream.send_eof()
            if not cancelled:
                await self._ended()
            await trio.to_thread.run_sync(self._process.finish, 0.0)
            await self._stream.aclose()
