"""The slow-call log: a bounded ring of the calls that took longer than a threshold.

Redis's SLOWLOG and Ceph's ``dump_historic_slow_ops``: what was slow, for whom, and when, kept
without growing. The check costs the call path one integer comparison (calls are timed already
for the statistics); only a slow call does more. Off with ``method_stats=False`` (then calls are
not timed at all).
"""

from __future__ import annotations

import collections
import contextlib
import time
from datetime import UTC, datetime
from typing import Any

from .._service.access import Peer

__all__ = ["SlowLog", "describe_peer", "iso_time"]

DEFAULT_THRESHOLD = 0.1  # seconds
SIZE = 128


def iso_time(wall: float) -> str:
    """``wall`` (seconds since the epoch) as ISO 8601 UTC, to the millisecond."""
    return datetime.fromtimestamp(wall, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def describe_peer(peer: Peer | None) -> dict[str, Any] | None:
    """A peer as JSON, with its executable's name (``/proc/PID/comm``; None once it exited)."""
    if peer is None:
        return None
    exe = None
    with contextlib.suppress(OSError), open(f"/proc/{peer.pid}/comm", "rb") as f:
        exe = f.read().decode(errors="replace").rstrip("\n")
    return {"pid": peer.pid, "uid": peer.uid, "gid": peer.gid, "exe": exe}


class SlowLog:
    """Calls over ``threshold`` seconds (None: none logged), the newest :data:`SIZE` of them."""

    __slots__ = ("records", "threshold", "threshold_ns")

    def __init__(self, threshold: float | None = DEFAULT_THRESHOLD) -> None:
        if threshold is not None and not (isinstance(threshold, (int, float)) and threshold >= 0):
            raise ValueError(f"slow_call_threshold must be seconds >= 0 or None, not {threshold!r}")
        self.threshold = threshold
        #: What the call path compares with (no call is that slow when off).
        self.threshold_ns = 1 << 62 if threshold is None else int(threshold * 1e9)
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=SIZE)

    def add(self, method: str, ns: int, peer: Peer | None, connection: int) -> None:
        self.records.append(
            {
                "time": iso_time(time.time()),
                "method": method,
                "duration_ms": round(ns / 1e6, 3),
                "connection": connection,
                "peer": describe_peer(peer),
            }
        )

    def newest(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` records, newest first."""
        out = list(self.records)[-limit:] if limit else []
        out.reverse()
        return out
