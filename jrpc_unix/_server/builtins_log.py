"""``rpc.log.levels`` and ``rpc.log.set``: see and change log levels while the process runs.

Envoy's ``/logging``, with the request its users keep filing: *debug for ten minutes*. A level
set with a ``ttl`` goes back to what it was when the ttl expires (a task of the server's, on
trio's clock), and is reverted too when the server stops, so a forgotten debug level does not
outlive the session that asked for it. Every change is logged on ``jrpc_unix.server``.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import trio

from .._errors import ErrorCode, RpcError
from .._service.access import Access
from .._service.context import current_context
from .._service.methods import MethodSpec
from .slowlog import describe_peer

__all__ = ["LogLevels", "log_methods"]

log = logging.getLogger("jrpc_unix.server")
LEVELS = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "NOTSET")
MAX_NAME = 200


def _invalid(message: str) -> RpcError:
    return RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", message)


def _logger(name: str) -> logging.Logger:
    return logging.getLogger(None if name in ("", "root") else name)


class LogLevels:
    """Levels set through ``rpc.log.set``, and what each goes back to when its ttl expires."""

    def __init__(self) -> None:
        #: logger name -> (trio deadline, the level to go back to)
        self._reverts: dict[str, tuple[float, int]] = {}
        self._changed = trio.lowlevel.ParkingLot()

    def levels(self) -> list[dict[str, Any]]:
        """Root and every logger with a level of its own, with the ttl left of each."""
        now = trio.current_time()
        named = [
            name
            for name, lg in sorted(logging.root.manager.loggerDict.items())
            if (isinstance(lg, logging.Logger) and lg.level != logging.NOTSET) or name in self._reverts
        ]
        out = []
        for name in ["root", *named]:
            lg = _logger(name)
            entry: dict[str, Any] = {
                "logger": name,
                "level": logging.getLevelName(lg.level),
                "effective": logging.getLevelName(lg.getEffectiveLevel()),
            }
            if name in self._reverts:
                deadline, previous = self._reverts[name]
                entry["ttl_s"] = round(max(deadline - now, 0.0), 3)
                entry["reverts_to"] = logging.getLevelName(previous)
            out.append(entry)
        return out

    def set(self, logger: Any, level: Any, ttl: Any = None) -> dict[str, Any]:
        if not isinstance(logger, str) or len(logger) > MAX_NAME:
            raise _invalid(f'logger must be a logger\'s name (root: "root"), not {logger!r}')
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise _invalid(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        if ttl is not None and (type(ttl) not in (int, float) or not 0 < ttl < math.inf):
            raise _invalid(f"ttl must be a positive number of seconds or null, not {ttl!r}")
        name = "root" if logger == "" else logger
        lg = _logger(name)
        previous = self._reverts.pop(name, (0.0, lg.level))[1]  # a ttl renewed keeps the original
        lg.setLevel(level.upper())
        if ttl is not None:
            self._reverts[name] = (trio.current_time() + ttl, previous)
            self._changed.unpark_all()
        ctx = current_context()
        log.warning(
            "log level of %s set to %s%s by %s",
            name,
            level.upper(),
            "" if ttl is None else f" for {ttl:g} s",
            describe_peer(ctx.peer),
        )
        return next(e for e in self.levels() if e["logger"] == name)

    async def keep(self, scope: trio.CancelScope) -> None:
        """Revert each level when its ttl expires, until ``scope`` is cancelled (at stop)."""
        try:
            with scope:
                while True:
                    deadline = min((d for d, _ in self._reverts.values()), default=math.inf)
                    with trio.move_on_at(deadline):
                        await self._changed.park()
                    self._revert(trio.current_time())
        finally:
            self._revert(math.inf)

    def _revert(self, now: float) -> None:
        for name, (deadline, previous) in list(self._reverts.items()):
            if deadline <= now:
                del self._reverts[name]
                _logger(name).setLevel(previous)
                log.warning("log level of %s back to %s", name, logging.getLevelName(previous))


def log_methods(levels: LogLevels) -> dict[str, MethodSpec]:
    def log_levels() -> list[dict[str, Any]]:
        """The root logger and every logger with a level of its own (and any ttl left)."""
        return levels.levels()

    def log_set(logger: str, level: str, ttl: float | None = None) -> dict[str, Any]:
        """Set ``logger``'s level; with ``ttl`` seconds it reverts by itself when they pass."""
        return levels.set(logger, level, ttl)

    admin = Access.ADMIN
    return {
        "rpc.log.levels": MethodSpec.build("rpc.log.levels", log_levels, access=admin),
        "rpc.log.set": MethodSpec.build("rpc.log.set", log_set, access=admin),
    }
