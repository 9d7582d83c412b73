"""The server: accept connections on a UNIX socket, serve each, stop gracefully.

``await serve(path, methods)`` runs until cancelled or until :meth:`Server.stop`. It works with
``nursery.start``: it reports started only once the socket is listening, with the Server as the
start value. Stop is graceful (hypercorn's model; specs/protocol.md §9): stop accepting, let
running calls finish until ``Limits.shutdown_grace`` passes, cancel what still runs (each call
answered), close every connection, then wait up to ``Limits.thread_grace`` for worker threads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import sys
from collections import Counter
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from typing import Any, Literal, Unpack

import trio

from .._errors import ServerSetupError, sole_exception
from .._service.access import Access, Peer, Policy, group_id
from .._service.dispatch import Dispatcher
from .._service.limits import Limits, raise_fd_limit
from .._service.methods import Methods, MethodSpec
from .._service.stats import ServerStats
from .._service.throttle import flush_all
from .admission import Admission
from .builtins import Operations, builtin_topics
from .builtins_health import HealthCheck
from .connection import Connection
from .logqueue import default_logging, start_log_thread, stop_log_thread
from .options import ServerOptions
from .pubsub import Producer, Topic
from .sdnotify import sd_notify
from .shared import ServeContext
from .signals import STATS_SIGNALS, STOP_SIGNALS, relay_signals
from .slowlog import DEFAULT_THRESHOLD
from .sockets import Listen, accept_all, addresses, open_listeners, stop_listening

__all__ = ["Server", "ServerOptions", "run", "serve", "serve_until_signalled"]

log = logging.getLogger("jrpc_unix.server")


class Server:
    """A JSON-RPC 2.0 service over UNIX sockets (one, or more: ``listen``); it serves once."""

    def __init__(
        self,
        methods: Methods | Mapping[str, Callable[..., Any]],
        *,
        limits: Limits | None = None,
        mode: Literal["concurrent", "serial"] = "concurrent",
        socket_mode: int = 0o600,
        socket_group: int | str | None = None,
        policy: Policy | None = None,
        topics: Mapping[str, str] | None = None,
        fast_path: bool = True,
        discover: bool = True,
        method_stats: bool = True,
        name: str | None = None,
        version: str | None = None,
        slow_call_threshold: float | None = DEFAULT_THRESHOLD,
        disable_builtins: Collection[str] = (),
        audit: bool | None = None,
        listen: Sequence[Listen] = (),
        topic_history: int = 100,
    ) -> None:
        """The options: specs/protocol.md, specs/security.md; specs/operations.md for ``name``,
        ``version`` (rpc.info), ``slow_call_threshold`` (seconds; None: off), ``disable_builtins``,
        ``audit`` (default: on with a policy), ``listen`` (more sockets), ``topic_history``."""
        if mode not in ("concurrent", "serial"):
            raise ValueError(f"mode must be 'concurrent' or 'serial', not {mode!r}")
        self.methods = Methods.coerce(methods)
        self.limits = limits or Limits()
        self.serial = mode == "serial"
        self.socket_mode = socket_mode
        self.socket_gid = None if socket_group is None else group_id(socket_group)
        self.policy = policy
        self.discover = discover  # answer rpc.discover (jrpc_unix._service.discover)
        self.stats = ServerStats(per_method=method_stats)
        self._history = topic_history
        audited = policy is not None if audit is None else audit
        self.operations = Operations(name, version, slow_call_threshold, audited, lambda: self.stopping)
        # New at each start: a resumed watch sees the restart (specs/protocol.md §10).
        self.epoch = self.operations.info.epoch = secrets.token_hex(8)
        self._disabled = frozenset(disable_builtins)
        self.listen = [x if isinstance(x, Listen) else Listen(x) for x in listen]
        own_topics = builtin_topics(self.stats)
        if "rpc.health" not in self._disabled:
            own_topics.append(self.operations.health.topic())
        self.topics: dict[str, Topic] = {t.name: t for t in own_topics}
        self.subscriptions_per_uid: Counter[int] = Counter()  # for Limits.max_subscriptions_per_uid
        for name, (description, producer, access) in self.methods.topics.items():
            self.add_topic(name, producer, description, access=access)
        for name, description in (topics or {}).items():
            if name not in self.topics:  # declared by the methods too: one topic
                self.add_topic(name, description=description)
        self.dispatcher = Dispatcher(self.methods, extensions=self._extensions(), fast_path=fast_path)
        self.operations.audit.bind(self.dispatcher)
        self._admission = Admission(self.limits, policy, self.stats)
        self._shared = ServeContext(
            self,
            self.limits,
            self.dispatcher,
            self.stats,
            self.topics,
            self.subscriptions_per_uid,
            self.serial,
            leave=self._admission.leave,
            slowlog=self.operations.slowlog,
            audit=self.operations.audit if self.operations.audit.enabled else None,
        )
        self._shared.own_topics = frozenset(t.name for t in own_topics)
        self.connections, self.workers = self._shared.connections, self._shared.workers
        self._accept_scope = trio.CancelScope()
        self._work_scope = trio.CancelScope()
        self._watchdog_scope = trio.CancelScope()
        self._keeper_scope = trio.CancelScope()  # the log levels' ttl keeper
        self._stopped = trio.Event()
        self._stop_requested = trio.Event()
        self._started = False

    def _extensions(self) -> dict[str, MethodSpec]:
        """The service's own methods, under the ``rpc.`` names the spec reserves for them."""
        return self.operations.extensions(self, self._disabled)

    def add_health_check(self, name: str, check: HealthCheck, *, timeout: float = 5.0) -> None:
        """Add a check to ``rpc.health`` (what it returns: specs/operations.md, "Health")."""
        self.operations.health.add(name, check, timeout)

    @property
    def stopping(self) -> bool:
        """A graceful stop has begun (:meth:`stop`)."""
        return self._shared.stopping

    def add_topic(
        self,
        name: str,
        producer: Producer | None = None,
        description: str = "",
        *,
        access: Access | None = None,
    ) -> None:
        """Declare a topic clients may subscribe to.

        Without ``producer`` it is fed by :meth:`publish`. With one, ``producer(**params)``
        (given the subscriber's ``rpc.subscribe`` params) returns the subscription's async
        iterator of events, which is asked for its next event only when the subscriber's
        connection can take it. A TypeError or ValueError it raises at once refuses the
        subscription with -32602 (an async generator function only runs at its first event).
        ``access``: the level a caller needs to subscribe; by default the highest any of the
        service's methods needs, and at least ``OPERATE`` (see :meth:`Methods.topic_access`).
        """
        if name in self.topics:
            raise ValueError(f"topic {name!r} exists already")
        level = self.methods.topic_access() if access is None else Access(access)
        self.topics[name] = Topic(name, producer, description, level, epoch=self.epoch, history=self._history)

    def publish(self, topic: str, data: Any) -> None:
        """Send ``data`` to every subscriber of ``topic``; never waits for a subscriber.

        A subscriber whose queue is full loses its oldest event (see specs/protocol.md). From
        another thread it waits only for the event loop to take the event, and does nothing
        once the server has stopped.
        """
        found = self.topics.get(topic)
        if found is not None and not found.watched and found.producer is None:
            return  # never watched (the common case): not even the hop onto the loop
        self._shared.loop.call(self._publish, topic, data)

    def _publish(self, topic: str, data: Any) -> None:
        try:
            found = self.topics[topic]
        except KeyError:
            raise KeyError(f"no topic {topic!r}; declare it with Server.add_topic") from None
        if found.producer is not None:
            raise ValueError(f"topic {topic!r} has a producer, which makes its events")
        self.stats.events_dropped += found.publish(data)

    async def wait_stopped(self) -> None:
        """Return once :meth:`serve` has finished."""
        await self._stopped.wait()

    def stop(self) -> None:
        """Begin a graceful stop (idempotent). From another thread or from asyncio code (when
        served by :mod:`jrpc_unix.aio`) the stop is handed to the event loop, as
        :meth:`publish` is."""
        self._shared.loop.call(self._stop)

    def _stop(self) -> None:
        if self._shared.stopping:
            return
        self._shared.stopping = True
        sd_notify("STOPPING=1", "STATUS=stopping: finishing the calls that run")
        self._accept_scope.cancel()
        self._watchdog_scope.cancel()
        self._keeper_scope.cancel()
        self._stop_requested.set()  # _shutdown takes it from here
        for conn in self.connections.everyone():
            conn.wake_for_stop()

    async def _shutdown(self) -> None:
        """After stop(): wait out the grace, then cancel what still runs, answering each call.

        Every call gets its answer (-32002) rather than a bare EOF; one more second bounds the
        flushing, after which whatever is left (a peer that does not read) is cut off.
        """
        await self._stop_requested.wait()
        with trio.move_on_after(self.limits.shutdown_grace):
            await self.connections.wait_empty()
        if self.connections:
            log.warning("grace of %s s over: cancelling calls still running", self.limits.shutdown_grace)
            for conn in self.connections.everyone():
                conn.cancel_for_shutdown()
            self._work_scope.deadline = trio.current_time() + 1.0

    async def serve(
        self, path: str, *, task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``path`` and serve until stopped; see the module docstring."""
        if self._started:
            raise RuntimeError("a Server serves once; create a new one")
        self._started = True
        wanted = addresses(path, self.socket_mode, self.socket_gid, self.policy, self.listen)
        self._shared.loop.enter()
        start_log_thread()
        self._admission.start()
        stack = contextlib.AsyncExitStack()
        try:
            bound = await open_listeners(stack, wanted)
        except BaseException:
            self._admission.close()
            stop_log_thread()
            raise
        paths = ", ".join(b.path for b in bound)
        try:
            async with stack:  # the files go first, on every way out
                with self._work_scope:
                    async with self._shared.hangups.running(), trio.open_nursery() as nursery:
                        if self.limits.idle_timeout is not None:
                            period, scope = self.limits.idle_timeout / 4, self._watchdog_scope
                            nursery.start_soon(self.connections.watch_idle, period, scope)
                        nursery.start_soon(self._shutdown)
                        nursery.start_soon(self.operations.log_levels.keep, self._keeper_scope)
                        self.operations.info.addresses.extend(b.path for b in bound)
                        task_status.started(self)
                        log.info("listening on %s", paths)
                        sd_notify("READY=1", f"STATUS=listening on {paths}", f"MAINPID={os.getpid()}")
                        with self._accept_scope:
                            await accept_all(bound, self._admission.accept, self._serve_connection, nursery)
                        self.stop()  # accept loop ended: stop gracefully (no-op if stopping)
                        had_file = await stop_listening(bound)
                        log.info("stopped accepting%s %s", "; removed" if had_file else " on", paths)
                await self.workers.wait_returned(self.limits.thread_grace)
        finally:
            self._admission.close()
            self._stopped.set()
            log.info("stopped")
            flush_all()  # what the throttles suppressed, counted
            stop_log_thread()

    def _serve_connection(
        self, stream: trio.SocketStream, peer: Peer | None, level: Access
    ) -> Coroutine[Any, Any, None]:
        """An admitted connection's task: its own ``serve``, not a coroutine that awaits it (one
        frame less for each idle connection to hold)."""
        return Connection(self._shared, stream, peer, level).serve()


async def serve(
    path: str,
    methods: Methods | Mapping[str, Callable[..., Any]],
    *,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
    **options: Unpack[ServerOptions],
) -> None:
    """Serve ``methods`` on ``path`` until cancelled; ``options`` are :class:`Server`'s."""
    await Server(methods, **options).serve(path, task_status=task_status)


async def serve_until_signalled(server: Server, path: str) -> None:
    """Serve until one of :data:`~jrpc_unix._server.signals.STOP_SIGNALS` arrives, then stop
    gracefully (see :func:`~jrpc_unix._server.signals.relay_signals`). Main thread only."""
    with trio.open_signal_receiver(*STOP_SIGNALS, *STATS_SIGNALS) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(relay_signals, signals, server)  # a signal during setup counts too
            await nursery.start(server.serve, path)
            await server.wait_stopped()
            nursery.cancel_scope.cancel()


def run(
    path: str, methods: Methods | Mapping[str, Callable[..., Any]], **options: Unpack[ServerOptions]
) -> None:
    """Serve in the foreground until SIGTERM/SIGINT/SIGHUP/SIGQUIT, then stop gracefully and return.

    For a process that is just this service: unless the application configured logging, log
    to stderr (``time level logger message``, INFO). A start-up failure (address in use, path
    too long, permission denied) prints one line on stderr and exits 1 (SystemExit), not a
    traceback. SIGUSR1/SIGUSR2 log the server's figures. :func:`run_or_raise` raises instead.
    """
    default_logging()
    try:
        run_or_raise(path, methods, **options)
    except (ServerSetupError, OSError) as exc:
        print(f"jrpc-unix: cannot serve on {path}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def run_or_raise(
    path: str, methods: Methods | Mapping[str, Callable[..., Any]], **options: Unpack[ServerOptions]
) -> None:
    """:func:`run` without its logging set-up; raises what stopped the server (e.g.
    :class:`AddressInUseError`), not an ExceptionGroup."""
    server = Server(methods, **options)
    raise_fd_limit(server.limits)  # the process is ours: the limits get their descriptors
    try:
        trio.run(serve_until_signalled, server, path)
    except BaseExceptionGroup as group:
        raise sole_exception(group) from None
