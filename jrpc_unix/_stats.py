"""Live counters of a server: plain integers, bumped on the event loop, read by ``snapshot``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ServerStats"]


@dataclass(slots=True)
class ServerStats:
    started: float = field(default_factory=time.monotonic)
    connections_open: int = 0
    connections_total: int = 0
    connections_rejected: int = 0
    calls: int = 0
    notifications: int = 0
    errors: int = 0
    in_flight: int = 0

    def snapshot(self) -> dict[str, Any]:
        """The counters as a JSON-ready dict."""
        return {
            "uptime_s": round(time.monotonic() - self.started, 3),
            "connections": {
                "open": self.connections_open,
                "total": self.connections_total,
                "rejected": self.connections_rejected,
            },
            "calls": self.calls,
            "notifications": self.notifications,
            "errors": self.errors,
            "in_flight": self.in_flight,
        }
