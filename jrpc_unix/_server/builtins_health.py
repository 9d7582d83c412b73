"""``rpc.info`` and ``rpc.health``: what runs, since when, and whether it is fit to serve.

A service registers health checks (:meth:`jrpc_unix.Server.add_health_check`): plain or async
callables, each with a timeout. ``rpc.health`` runs them all concurrently (a plain one in a
thread, so a check that blocks cannot stall the event loop) and answers
``{"status": "serving"|"draining"|"not_serving", "checks": {name: {"status", "detail"}}}``.
The ``health`` topic sends that state at once, then again whenever it changes (checks are run
again every ``interval`` seconds while someone watches).
"""

from __future__ import annotations

import inspect
import math
import os
import platform
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from .._service.access import Access
from .._service.methods import MethodSpec
from .._version import __version__
from .pubsub import Topic
from .slowlog import iso_time

__all__ = ["Health", "HealthCheck", "ServiceInfo", "info_methods"]

SERVING, DRAINING, NOT_SERVING = "serving", "draining", "not_serving"
#: A check returns True or None (passing), a str (passing, with that detail), or False
#: (failing); one that raises or outlives its timeout fails, with why as its detail.
HealthCheck = Callable[[], "bool | str | Awaitable[bool | str | None] | None"]
MIN_INTERVAL = 0.05


@dataclass(slots=True)
class ServiceInfo:
    """Who this service is, for ``rpc.info`` and the OpenRPC document's ``info``."""

    name: str | None = None
    version: str | None = None
    addresses: list[str] = field(default_factory=list)
    epoch: str = ""  # the server's, which published events carry (a new one at each start)
    started_wall: float = field(default_factory=time.time)
    started: float = field(default_factory=time.monotonic)

    def answer(self) -> dict[str, Any]:
        return {
            "name": self.name or "jrpc-unix service",
            "version": self.version,
            "library_version": __version__,
            "pid": os.getpid(),
            "started": iso_time(self.started_wall),
            "uptime_s": round(time.monotonic() - self.started, 3),
            "python": platform.python_version(),
            "addresses": list(self.addresses),
            "epoch": self.epoch,
        }


@dataclass(slots=True)
class _Check:
    func: Callable[[], Any]
    timeout: float
    is_async: bool


class Health:
    """The service's health checks, and whether its server is stopping."""

    def __init__(self, stopping: Callable[[], bool]) -> None:
        self._stopping = stopping
        self._checks: dict[str, _Check] = {}

    def add(self, name: str, check: HealthCheck, timeout: float = 5.0) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a health check needs a name, not {name!r}")
        if name in self._checks:
            raise ValueError(f"health check {name!r} exists already")
        if not callable(check):
            raise TypeError(f"health check {name!r}: {check!r} is not callable")
        if not (isinstance(timeout, (int, float)) and 0 < timeout < math.inf):
            raise ValueError(f"health check {name!r}: timeout must be positive seconds, not {timeout!r}")
        self._checks[name] = _Check(check, float(timeout), inspect.iscoroutinefunction(check))

    async def report(self) -> dict[str, Any]:
        """Run every check (concurrently); the ``rpc.health`` answer."""
        results: dict[str, dict[str, str]] = {}
        async with trio.open_nursery() as nursery:
            for name, check in self._checks.items():
                nursery.start_soon(self._run, name, check, results)
        checks = {name: results[name] for name in sorted(results)}
        if self._stopping():
            status = DRAINING
        elif any(c["status"] != SERVING for c in checks.values()):
            status = NOT_SERVING
        else:
            status = SERVING
        return {"status": status, "checks": checks}

    @staticmethod
    async def _run(name: str, check: _Check, results: dict[str, dict[str, str]]) -> None:
        try:
            with trio.fail_after(check.timeout):
                if check.is_async:
                    value = await check.func()
                else:  # abandoned at the timeout: a hung check holds a thread, not the loop
                    value = await trio.to_thread.run_sync(check.func, abandon_on_cancel=True)
        except trio.TooSlowError:
            results[name] = {"status": NOT_SERVING, "detail": f"no answer within {check.timeout:g} s"}
            return
        except Exception as exc:
            results[name] = {"status": NOT_SERVING, "detail": f"{type(exc).__name__}: {exc}"}
            return
        passing = value is None or value is True or isinstance(value, str)
        detail = value if isinstance(value, str) else "" if passing else "check failed"
        results[name] = {"status": SERVING if passing else NOT_SERVING, "detail": detail}

    def topic(self) -> Topic:
        def health(interval: float = 5.0) -> AsyncIterator[dict[str, Any]]:
            """The state now, then each change (checks run again every ``interval`` seconds)."""
            if type(interval) not in (int, float) or not MIN_INTERVAL <= interval < math.inf:
                raise ValueError(f"interval must be a number of seconds >= 0.05, not {interval!r}")
            return self._changes(interval)

        description = "rpc.health now, then each change (checks rerun every `interval` s, default 5)"
        return Topic("health", health, description, Access.READ)

    async def _changes(self, interval: float) -> AsyncIterator[dict[str, Any]]:
        last = None
        while True:
            now = await self.report()
            if now != last:
                yield now
                last = now
            await trio.sleep(interval)


def info_methods(info: ServiceInfo, health: Health) -> dict[str, MethodSpec]:
    def rpc_info() -> dict[str, Any]:
        """Service name and version, library and Python versions, pid, start time, addresses."""
        return info.answer()

    async def rpc_health() -> dict[str, Any]:
        """``serving``, ``draining`` (stopping) or ``not_serving`` (a check fails), and each check."""
        return await health.report()

    read = Access.READ
    return {
        "rpc.info": MethodSpec.build("rpc.info", rpc_info, access=read),
        "rpc.health": MethodSpec.build("rpc.health", rpc_health, access=read),
    }
