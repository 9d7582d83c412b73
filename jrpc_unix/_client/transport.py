"""The seams between a public client and the I/O under it.

Each public client *has* a transport, as httpx's do, and keeps only its public methods::

    Client        --has-->  BlockingTransport (blocking_io.py)  --has-->  a BlockingStream
    AsyncClient   --has-->  an AsyncTransport: TrioTransport (trio_io.py) over a trio Stream,
                            or AsyncioTransport (aio_io.py) over asyncio streams

All transports drive the same sans-IO :class:`~.._wire.conversation.Conversation` and match the
events it returns; the clients build requests with it and read answers from its exchanges.

* A :class:`BlockingStream` is the blocking client's byte pipe. :class:`~.connect.UnixSocketStream`
  is the one over a UNIX socket; :class:`~.ssh.SshStream` (an ``ssh`` process's stdin/stdout, as
  our end of a socketpair) plugs into :class:`~.blocking_io.BlockingTransport` through its
  ``connect`` argument, keeping the turn lock, the deadlines, reconnecting and the read loop.
* An :class:`AsyncTransport` is what :class:`~.trio_client.AsyncClient` (and its subscriptions)
  need from an event loop: :class:`~.trio_io.TrioTransport` runs a reader and a writer task over
  any ``trio.abc.Stream`` (:func:`~.trio_client.client_over`; :func:`~.trio_client.open_client`
  gives it a UNIX socket, or :class:`~.ssh_trio.SshTrioStream` for an ``ssh://`` address).
  :class:`~.aio_io.AsyncioTransport` implements the same methods with asyncio's tasks,
  events and lock (:func:`jrpc_unix.aio.open_client`), and the same ``AsyncClient`` front
  serves it. What the two event-loop transports wait for (and wake) is one piece of code,
  :class:`~.waiting.WaitingCallers`, given the loop's event type; their connect's retries while
  the accept queue is full are one too, :func:`~.connect.connecting`.

Standard library only (the blocking client imports this module).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .._wire.conversation import Conversation, Exchange, Notification
    from .._wire.feeds import Feed

__all__ = ["AsyncLock", "AsyncTransport", "BlockingStream"]


class BlockingStream(Protocol):
    """A connected byte stream the blocking transport reads and writes; one thread at a time,
    except :meth:`interrupt`. ``deadline`` is a ``time.monotonic()`` value, None for no limit."""

    def send_all(self, data: bytes, deadline: float | None) -> None:
        """Write ``data`` whole. TimeoutError past ``deadline``; BrokenPipeError or
        ConnectionResetError if the peer has closed (the transport then reconnects once)."""

    def wait_readable(self, deadline: float | None) -> bool:
        """Wait until something can be read (or EOF); False once ``deadline`` passed. Ctrl-C
        must be able to interrupt it."""

    def receive_some(self) -> bytes:
        """What is there, never blocking: BlockingIOError if nothing, b"" at EOF."""

    def still_open(self) -> bool:
        """False if the peer has closed or reset the stream; never blocks."""

    def interrupt(self) -> None:
        """Called from another thread (``Client.close``): end a :meth:`wait_readable` at once."""

    def close(self) -> None: ...


class AsyncLock(Protocol):
    """``async with lock:`` (``trio.Lock``, ``asyncio.Lock``)."""

    async def __aenter__(self) -> object: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> object: ...


class AsyncTransport(Protocol):
    """One connection's I/O for :class:`~.trio_client.AsyncClient`; see the module docstring.

    Waits raise ConnectionClosedError (or the ProtocolError that ended the connection) once it
    is over; a caller cancelled while waiting for an exchange gives it up (withdrawn if unsent,
    else followed by ``rpc.cancel``), never waiting to do so.
    """

    conversation: Conversation

    @property
    def progress_lock(self) -> AsyncLock:
        """Held while subscribing the connection to progress reports, so it happens once."""

    @property
    def closed(self) -> bool: ...

    async def exchange(self, pair: tuple[Exchange, bytes]) -> Exchange:
        """Send the request and wait until it is answered, handing on progress reports."""

    async def send(self, data: bytes) -> None:
        """Send a notification; return once it is written."""

    def send_soon(self, data: bytes) -> None:
        """Queue a notification without waiting (cleanup while a cancellation unwinds); dropped
        if the connection can no longer write."""

    async def next_event(self, feed: Feed) -> Any:
        """The next event of ``feed``; :data:`~.._wire.feeds.END` once its reader ended it."""

    def feed_changed(self, feed: Feed) -> None:
        """Wake the readers of ``feed`` (its reader just ended it)."""

    async def next_notification(self) -> Notification:
        """The next notification of the conversation's inbox, waiting for one to come."""
