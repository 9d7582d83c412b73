"""What the connections of one server share, handed to each: not the Server itself.

A connection needs the server's limits, dispatcher, statistics, topics, worker threads, hang-up
watch and whether it is stopping; it gives its slot back through the :class:`ConnectionSet`.
Holding these explicitly, rather than the :class:`~jrpc_unix.Server`, keeps the server's module
above the connection's, with no way back (hypercorn's ``TCPServer`` gets its app, config and
state the same way).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import InitVar, dataclass, field
from typing import Any, Protocol

import trio

from .._service.access import Peer
from .._service.context import ServerHandle
from .._service.dispatch import Dispatcher
from .._service.limits import Limits
from .._service.stats import ServerStats
from .audit import Audit
from .hangup import HangupWatch
from .loop import EventLoop
from .pubsub import Topic
from .slowlog import SlowLog
from .workers import WorkerThreads

__all__ = ["AwaitHandler", "ConnectionSet", "HostedEvents", "Member", "ServeContext", "await_in_trio"]

#: How the server awaits an ``async def`` handler: ``(func, args, kwargs) -> result``.
AwaitHandler = Callable[[Callable[..., Any], tuple[Any, ...], dict[str, Any]], Awaitable[Any]]


async def await_in_trio(func: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A trio program's handlers are trio coroutines: awaited right in the call's task."""
    return await func(*args, **kwargs)


class HostedEvents:
    """A service's topic producer, each event awaited as its handlers are (the host's
    :data:`AwaitHandler`): under asyncio its async generator runs on the app's loop too."""

    __slots__ = ("_await", "_events")

    def __init__(self, events: AsyncIterator[Any], await_handler: AwaitHandler) -> None:
        self._events = events
        self._await = await_handler

    def __aiter__(self) -> HostedEvents:
        return self

    async def __anext__(self) -> Any:
        return await self._await(_next_event, (self._events,), {})


async def _next_event(events: AsyncIterator[Any]) -> Any:
    return await anext(events)  # (a coroutine, which an asyncio task needs, around __anext__())


class Member(Protocol):
    """What the server does to each of its connections."""

    @property
    def peer(self) -> Peer | None: ...
    def wake_for_stop(self) -> None: ...
    def cancel_for_shutdown(self) -> None: ...
    def idle_tick(self) -> None: ...


class ConnectionSet:
    """The server's connections: live ones, each holding a slot, and *detached* ones (the peer
    left; notifications and run-to-completion calls still run), at most ``max_connections``."""

    def __init__(self, limits: Limits, stats: ServerStats, leave: Callable[[Peer | None], None]) -> None:
        self._max_detached = limits.max_connections
        self._stats = stats
        self._leave = leave  # gives the slot back to admission (its count by uid)
        self.live: set[Member] = set()
        self.detached: set[Member] = set()
        self._changed = trio.lowlevel.ParkingLot()  # a connection ended

    def __bool__(self) -> bool:
        return bool(self.live or self.detached)

    def everyone(self) -> list[Member]:
        return [*self.live, *self.detached]

    def add(self, conn: Member) -> None:
        self.live.add(conn)
        self._stats.connections_open += 1
        self._stats.connections_total += 1

    def detach(self, conn: Member) -> bool:
        """``conn``'s peer is gone: free its slot now, what still runs for it goes on detached;
        False if ``max_connections`` are detached already (then ``conn`` must cancel it all)."""
        if len(self.detached) >= self._max_detached:
            return False
        self.release(conn)
        self.detached.add(conn)
        self._stats.connections_detached += 1
        return True

    def release(self, conn: Member) -> None:
        """Give back ``conn``'s slot (and its count by uid), or its place among the detached."""
        if conn in self.detached:
            self.detached.discard(conn)
            self._stats.connections_detached -= 1
        elif conn in self.live:
            self.live.discard(conn)
            self._leave(conn.peer)
            self._stats.connections_open -= 1
        self._changed.unpark_all()

    async def wait_empty(self) -> None:
        """Return once every connection, live or detached, has ended."""
        while self:
            await self._changed.park()

    async def watch_idle(self, period: float, scope: trio.CancelScope) -> None:
        """The idle watchdog: every ``period`` (a quarter of ``idle_timeout``), each live
        connection's ``idle_tick``, until ``scope`` is cancelled (at stop)."""
        with scope:
            while True:
                await trio.sleep(period)
                for conn in list(self.live):
                    conn.idle_tick()


@dataclass(eq=False, slots=True)
class ServeContext:
    """What every connection of one server shares (see the module docstring)."""

    #: The Server, as handlers see it (``RequestContext.server``).
    server: ServerHandle
    limits: Limits
    dispatcher: Dispatcher
    stats: ServerStats
    topics: dict[str, Topic]
    #: Open subscriptions per uid, all connections together (``max_subscriptions_per_uid``).
    subscriptions_per_uid: Counter[int]
    #: ``mode="serial"``: every message is a barrier.
    serial: bool
    #: Gives a connection's slot back to admission (its count by uid), for :attr:`connections`.
    leave: InitVar[Callable[[Peer | None], None]]
    connections: ConnectionSet = field(init=False)
    workers: WorkerThreads = field(init=False)
    hangups: HangupWatch = field(init=False, default_factory=HangupWatch)
    loop: EventLoop = field(init=False, default_factory=EventLoop)
    #: How ``async def`` handlers of the service are awaited: in trio, or as tasks of the
    #: asyncio loop the server is a guest of (:mod:`jrpc_unix.aio` sets it before serving).
    await_handler: AwaitHandler = await_in_trio
    #: The server's own topics (``stats``, ``progress``, ``health``): trio code under every host.
    own_topics: frozenset[str] = frozenset()
    #: The server is stopping: no new work starts; what waits is answered -32002.
    stopping: bool = False
    #: The calls over ``slow_call_threshold`` (``rpc.slowlog``).
    slowlog: SlowLog = field(default_factory=SlowLog)
    #: The audit trail (``rpc.audit``); None: nothing is audited.
    audit: Audit | None = None

    def __post_init__(self, leave: Callable[[Peer | None], None]) -> None:
        self.connections = ConnectionSet(self.limits, self.stats, leave)
        self.workers = WorkerThreads(self.limits, self.stats)
