"""The server's limits, with defaults safe for a control socket on a production host."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Limits"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the server enforces; all configurable. ``None`` means unbounded."""

    #: Longest accepted message (one line, without its newline), in bytes.
    max_message_size: int = 1 << 20
    #: Most requests in one batch.
    max_batch: int = 100
    #: Most connections open at once.
    max_connections: int = 128
    #: Most connections open at once from one user (uid).
    max_connections_per_uid: int | None = 32
    #: Most calls running at once on one connection; reading pauses beyond it.
    max_in_flight: int = 32
    #: Close a connection after this many seconds with nothing received and nothing running.
    idle_timeout: float | None = 300.0
    #: Cancel a handler after this many seconds (answering "timed out"); per method overrides.
    handler_timeout: float | None = None
    #: On stop, how long in-flight calls may take to finish before they are cancelled.
    shutdown_grace: float = 5.0
    #: Unsent answer bytes on one connection above which the server stops reading from it.
    max_pending_output: int = 1 << 20
    #: Most subscriptions open at once on one connection; ``rpc.subscribe`` beyond it: -32006.
    max_subscriptions: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None and value <= 0:
                raise ValueError(f"Limits.{f.name} must be positive, not {value!r}")
