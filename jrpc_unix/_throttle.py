"""Log lines that any client can cause, at a bounded rate.

A local client can send thousands of failing notifications or connections a second; one log
line each would flood the service's log (and its disk). Per kind of event, the first ``burst``
lines of each ``period`` are logged; the rest are counted and reported in one line when the
next period starts. Tracebacks of handler crashes are not throttled: their error ids are what
callers quote back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Throttle"]


class Throttle:
    """``warning(kind, msg, *args)``: like ``Logger.warning``, at most ``burst`` per ``period``."""

    def __init__(
        self,
        logger: logging.Logger,
        period: float = 10.0,
        burst: int = 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._clock = clock
        self._period = period
        self._burst = burst
        self._windows: dict[str, list[float]] = {}  # kind -> [window start, logged, suppressed]

    def warning(self, kind: str, msg: str, *args: Any) -> None:
        now = self._clock()
        window = self._windows.get(kind)
        if window is None or now - window[0] >= self._period:
            if window is not None and window[2]:
                took = now - window[0]
                self._log.warning("%d more %r messages suppressed in %.0f s", window[2], kind, took)
            window = self._windows[kind] = [now, 0, 0]
        if window[1] < self._burst:
            window[1] += 1
            self._log.warning(msg, *args)
        else:
            window[2] += 1
