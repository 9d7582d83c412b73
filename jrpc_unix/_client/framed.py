"""The blocking client's stream in a framing other than newline JSON (``framing=``): the bytes pass
through a sans-IO :class:`~.._wire.client_framing.ClientFraming` each way, nothing else changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._wire.client_framing import ClientFraming
from .connect import UnixSocketStream

if TYPE_CHECKING:
    from .blocking_io import Connect
    from .transport import BlockingStream

__all__ = ["FramedBlockingStream", "framed_connect"]


def framed_connect(framing: str, max_message_size: int, over: Connect = UnixSocketStream.connect) -> Connect:
    """The blocking transport's ``connect`` for ``framing`` (a fresh translator per connection),
    over the streams ``over`` opens (a UNIX socket's, or ssh's)."""
    ClientFraming(framing, max_message_size)  # ValueError now for a framing that does not exist

    def connect(address: str, deadline: float | None) -> BlockingStream:
        stream = over(address, deadline)
        return FramedBlockingStream(stream, ClientFraming(framing, max_message_size))

    return connect


class FramedBlockingStream:
    """A :class:`~.transport.BlockingStream` over another, translated by ``framing``."""

    def __init__(self, stream: BlockingStream, framing: ClientFraming) -> None:
        self._stream = stream
        self._framing = framing

    def send_all(self, data: bytes, deadline: float | None) -> None:
        self._stream.send_all(self._framing.outgoing(data), deadline)

    def wait_readable(self, deadline: float | None) -> bool:
        return self._stream.wait_readable(deadline)

    def receive_some(self) -> bytes:
        data = self._stream.receive_some()
        if not data:
            return b""  # EOF
        lines = self._framing.incoming(data)
        if not lines:  # part of a frame: nothing for the conversation yet
            raise BlockingIOError
        return lines

    def still_open(self) -> bool:
        return self._stream.still_open()

    def interrupt(self) -> None:
        self._stream.interrupt()

    def close(self) -> None:
        self._stream.close()
