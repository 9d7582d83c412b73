"""Log lines that any client can cause, at a bounded rate and of a bounded length.

A local client can send thousands of failing requests or connections a second; one log line
each would flood the service's log (and its disk). Per kind of event, the first ``burst`` lines
of each ``period`` are logged; the rest are counted, and one line reports the count once the
period is over (at the next line of any kind, or when the server stops). At most 256 kinds are
tracked at once; further kinds share one window, so clients cannot grow the table.
"""

from __future__ import annotations

import logging
import reprlib
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["Throttle", "short"]

_MAX_KINDS = 256
_OTHER = "(other kinds)"
_all: weakref.WeakSet[Throttle] = weakref.WeakSet()

_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 200
_repr.maxlevel = 3


def short(value: Any) -> str:
    """``repr(value)`` cut to a few hundred characters, for client-supplied values in logs."""
    return _repr.repr(value)


class Throttle:
    """Like ``Logger.warning`` (or ``.log``), at most ``burst`` lines per ``period`` per kind.

    ``summarise=False`` drops the excess silently (for callers that log something shorter
    instead, see :meth:`allow`).
    """

    def __init__(
        self,
        logger: logging.Logger,
        period: float = 10.0,
        burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
        *,
        summarise: bool = True,
    ) -> None:
        self._log = logger
        self._clock = clock
        self._period = period
        self._burst = burst
        self._summarise = summarise
        self._windows: dict[str, list[float]] = {}  # kind -> [window start, logged, suppressed]
        self._sweep_at = clock() + period
        _all.add(self)

    def warning(self, kind: str, msg: str, *args: Any) -> None:
        self.log(logging.WARNING, kind, msg, *args)

    def log(self, level: int, kind: str, msg: str, *args: Any, **kwargs: Any) -> None:
        if self.allow(kind):
            self._log.log(level, msg, *args, **kwargs)

    def allow(self, kind: str) -> bool:
        """Count a line of ``kind``: True if it is within this period's burst."""
        now = self._clock()
        if now >= self._sweep_at:
            self._sweep(now)
        window = self._windows.get(kind)
        if window is None and len(self._windows) >= _MAX_KINDS:
            kind = _OTHER
            window = self._windows.get(kind)
        if window is None or now - window[0] >= self._period:
            if window is not None:
                self._report(kind, window, now)
            window = self._windows[kind] = [now, 0, 0]
        if window[1] < self._burst:
            window[1] += 1
            return True
        window[2] += 1
        return False

    def flush(self) -> None:
        """Report every count of suppressed lines now (the server is stopping)."""
        now = self._clock()
        for kind, window in self._windows.items():
            self._report(kind, window, now)
        self._windows.clear()

    def _sweep(self, now: float) -> None:
        """Report and forget the windows that are over (kinds that went quiet)."""
        for kind, window in list(self._windows.items()):
            if now - window[0] >= self._period:
                self._report(kind, window, now)
                del self._windows[kind]
        self._sweep_at = now + self._period

    def _report(self, kind: str, window: list[float], now: float) -> None:
        if window[2] and self._summarise:
            took = now - window[0]
            self._log.warning("%d more %r messages suppressed in %.0f s", window[2], kind, took)
        window[2] = 0


def flush_all() -> None:
    """Every throttle reports what it suppressed (called when a server stops)."""
    for throttle in list(_all):
        throttle.flush()
