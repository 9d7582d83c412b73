"""The trio client's stream in a framing other than newline JSON (``framing=``): the bytes pass
through a sans-IO :class:`~.._wire.client_framing.ClientFraming` each way, nothing else changes."""

from __future__ import annotations

import trio

from .._wire.client_framing import ClientFraming

__all__ = ["FramedTrioStream"]


class FramedTrioStream(trio.abc.Stream):
    """A trio stream over another, translated by ``framing``."""

    def __init__(self, stream: trio.abc.Stream, framing: ClientFraming) -> None:
        self._stream = stream
        self._framing = framing

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(self._framing.outgoing(bytes(data)))

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            data = await self._stream.receive_some(max_bytes)
            if not data:
                return b""
            lines = self._framing.incoming(bytes(data))
            if lines:
                return lines

    async def send_eof(self) -> None:
        if isinstance(self._stream, trio.abc.HalfCloseableStream):
            await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()
