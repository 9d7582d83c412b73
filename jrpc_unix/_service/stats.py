"""Live statistics of a server, cheap enough to stay on in production.

Everything is a plain integer bumped on the event loop. Latency goes into a fixed log-linear
histogram per method (8 sub-buckets per power of two of nanoseconds: percentiles within ~9 %,
in a fixed 512-slot list), so memory never grows with traffic. Only registered methods get an
entry; calls to unknown names are counted together, so a client cannot grow the table.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any

__all__ = ["Histogram", "MethodStats", "ServerStats"]

_SUB = 8  # sub-buckets per power of two
_SLOTS = 64 * _SUB


def _slot(ns: int) -> int:
    """The slot of a latency: its top 4 bits (1 + 3 bits of sub-bucket), by power of two."""
    if ns < _SUB:
        return ns
    exp = ns.bit_length() - 4
    return (exp + 1) * _SUB + ((ns >> exp) & (_SUB - 1))


# The slot of every latency from 128 ns (where a slot is 8 ns wide or more) up to 131 us, by
# ``ns >> 3``: one lookup instead of the arithmetic, as every call is timed (16 KiB).
_TABLE_START, _TABLE_END = 128, 1 << 17
_SLOT_OF = bytes(_slot(ns << 3) for ns in range(_TABLE_END >> 3))


class Histogram:
    """Log-linear latency histogram over nanoseconds."""

    __slots__ = ("slots", "total_ns")

    def __init__(self) -> None:
        self.total_ns = 0
        self.slots = [0] * _SLOTS

    @property
    def count(self) -> int:
        """How many latencies were added (summed when read: adding is what must be cheap)."""
        return sum(self.slots)

    def add(self, ns: int) -> None:
        self.total_ns += ns
        self.slots[_SLOT_OF[ns >> 3] if _TABLE_START <= ns < _TABLE_END else _slot(ns)] += 1

    @staticmethod
    def _value(slot: int) -> float:
        """The midpoint of a slot's range, in nanoseconds."""
        if slot < _SUB:
            return float(slot)
        exp = slot // _SUB - 1
        low = (_SUB + slot % _SUB) << exp
        return low + (1 << exp) / 2

    def percentile(self, q: float) -> float:
        """The q-quantile (0..1) in nanoseconds; 0 when empty."""
        count = self.count
        if not count:
            return 0.0
        rank = max(1, round(q * count))
        seen = 0
        for slot, n in enumerate(self.slots):
            seen += n
            if seen >= rank:
                return self._value(slot)
        return self._value(_SLOTS - 1)


class MethodStats:
    __slots__ = ("calls", "errors", "latency", "notifications")

    def __init__(self) -> None:
        self.calls = 0
        self.notifications = 0
        self.errors = 0
        self.latency = Histogram()

    def snapshot(self) -> dict[str, Any]:
        lat = self.latency
        count = lat.count
        return {
            "calls": self.calls,
            "notifications": self.notifications,
            "errors": self.errors,
            "latency_us": {
                "count": count,
                "mean": round(lat.total_ns / count / 1000, 1) if count else 0.0,
                "p50": round(lat.percentile(0.5) / 1000, 1),
                "p99": round(lat.percentile(0.99) / 1000, 1),
            },
        }


class ServerStats:
    """The server's counters; ``snapshot()`` is what ``rpc.stats`` answers."""

    def __init__(self, per_method: bool = True) -> None:
        #: Off: no per-method table or latency (what it costs is measured in benchmarks/).
        self.per_method = per_method
        self.started = time.monotonic()
        self.connections_open = 0
        self.connections_total = 0
        self.connections_detached = 0  # the client left; a notification (etc.) still runs
        #: (max_connections, reserved_connections) as fitted into RLIMIT_NOFILE at start.
        self.connection_limits = (0, 0)
        self.calls = 0
        self.notifications = 0
        self.errors = 0
        self.in_flight = 0
        self.subscriptions = 0
        self.events_dropped = 0
        self.threads_busy = 0  # worker threads running a blocking handler for a live call
        self.threads_abandoned = 0  # ... for a call that was cancelled or timed out
        self.threads_waiting = 0  # blocking calls waiting for a thread slot
        self.rejected_connections: Counter[str] = Counter()
        self.rejected_requests: Counter[str] = Counter()
        self.methods: dict[str, MethodStats] = {}
        self._unknown = MethodStats()
        self._sources: dict[str, Callable[[], Any]] = {}

    def method(self, name: str, known: bool) -> MethodStats:
        """The entry for ``name``; one shared entry for every unknown name."""
        if not known or not self.per_method:
            return self._unknown
        entry = self.methods.get(name)
        if entry is None:
            entry = self.methods[name] = MethodStats()
        return entry

    def add_source(self, name: str, source: Callable[[], Any]) -> None:
        """Include ``source()`` under ``name`` in every snapshot (the service's own metrics)."""
        if name in ("server", "methods"):
            raise ValueError(f"{name!r} is taken by the server's own figures")
        self._sources[name] = source

    def snapshot(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        methods = {name: m.snapshot() for name, m in sorted(self.methods.items())}
        if self.per_method and (self._unknown.calls or self._unknown.notifications):
            methods["(unknown)"] = self._unknown.snapshot()
        out: dict[str, Any] = {
            "server": {
                "uptime_s": round(time.monotonic() - self.started, 3),
                "connections": {
                    "open": self.connections_open,
                    "total": self.connections_total,
                    "limit": self.connection_limits[0],
                    "reserved": self.connection_limits[1],
                    "rejected": dict(self.rejected_connections),
                    "detached": self.connections_detached,
                },
                "calls": self.calls,
                "notifications": self.notifications,
                "errors": self.errors,
                "in_flight": self.in_flight,
                "subscriptions": self.subscriptions,
                "events_dropped": self.events_dropped,
                "threads": {
                    "busy": self.threads_busy,
                    "abandoned": self.threads_abandoned,
                    "waiting": self.threads_waiting,
                },
                "rejected_requests": dict(self.rejected_requests),
            },
            "methods": methods,
        }
        for name, source in self._sources.items():
            out[name] = source()
        return out
