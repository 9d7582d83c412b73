"""``rpc.metrics``: ``rpc.stats`` in the OpenMetrics text format (Prometheus's exposition format).

For node_exporter's textfile collector (``jrpc-unix stats --openmetrics SOCK > x.prom``) or any
scraper that reads the format. Written here by hand: the format is a few lines of text, and the
server must not depend on ``prometheus_client`` (the tests parse our output with its parser).

Each method's latency histogram is the stats' own log-linear one (8 slots per power of two),
summed into the fixed ``le`` buckets below: a bucket holds the calls whose slot ends at or below
its bound, so a count is exact to within one slot's width (~9 %) of the bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from .._service.access import Access
from .._service.methods import MethodSpec
from .._service.stats import Histogram, ServerStats

__all__ = ["metrics_methods", "openmetrics"]

PREFIX = "jrpc_unix"
#: Bucket bounds in seconds: 10 us to 10 s.
BOUNDS = (*tuple(m * 10.0**e for e in range(-5, 1) for m in (1, 2.5, 5)), 10.0)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _slot_end_ns(slot: int) -> int:
    """The upper end (exclusive) of a histogram slot's range, in nanoseconds."""
    if slot < 8:
        return slot + 1
    exp = slot // 8 - 1
    return ((8 + slot % 8) << exp) + (1 << exp)


#: For each bound: how many slots end at or below it (a bucket sums the slots before that).
_CUTS = [
    sum(1 for slot in range(len(Histogram().slots)) if _slot_end_ns(slot) <= bound * 1e9) for bound in BOUNDS
]
_LES = [f"{bound:g}" for bound in BOUNDS]


def _buckets(hist: Histogram) -> Iterator[tuple[str, int]]:
    """(le, cumulative count) for each bound, then +Inf."""
    slots, done, seen = hist.slots, 0, 0
    for le, cut in zip(_LES, _CUTS, strict=True):
        seen += sum(slots[done:cut])
        done = cut
        yield le, seen
    yield "+Inf", hist.count


def openmetrics(stats: ServerStats) -> str:
    """The server's figures as an OpenMetrics text exposition (ends with ``# EOF``)."""
    lines: list[str] = []

    def family(name: str, kind: str, help: str, samples: list[tuple[str, str, Any]]) -> None:
        full = f"{PREFIX}_{name}"
        lines.append(f"# TYPE {full} {kind}")
        lines.append(f"# HELP {full} {help}")
        for suffix, labels, value in samples:
            lines.append(f"{full}{suffix}{'{' + labels + '}' if labels else ''} {value}")

    s = stats
    family(
        "uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        [("", "", f"{time.monotonic() - s.started:.3f}")],
    )
    family("connections_open", "gauge", "Connections open now.", [("", "", s.connections_open)])
    family(
        "connections_detached",
        "gauge",
        "Connections whose peer left while work runs on.",
        [("", "", s.connections_detached)],
    )
    family("connections", "counter", "Connections accepted.", [("_total", "", s.connections_total)])
    family("calls", "counter", "Calls received.", [("_total", "", s.calls)])
    family("notifications", "counter", "Notifications received.", [("_total", "", s.notifications)])
    family("errors", "counter", "Error answers.", [("_total", "", s.errors)])
    family("in_flight", "gauge", "Calls running now.", [("", "", s.in_flight)])
    family("subscriptions", "gauge", "Subscriptions open now.", [("", "", s.subscriptions)])
    family(
        "events_dropped",
        "counter",
        "Events dropped for slow subscribers.",
        [("_total", "", s.events_dropped)],
    )
    threads = [
        ("", f'state="{k}"', v)
        for k, v in (
            ("busy", s.threads_busy),
            ("abandoned", s.threads_abandoned),
            ("waiting", s.threads_waiting),
        )
    ]
    family("threads", "gauge", "Worker threads by state.", threads)
    rejected = [("_total", f'reason="{_label(k)}"', v) for k, v in sorted(s.rejected_connections.items())]
    family("rejected_connections", "counter", "Connections refused, by reason.", rejected)
    rejected = [("_total", f'reason="{_label(k)}"', v) for k, v in sorted(s.rejected_requests.items())]
    family("rejected_requests", "counter", "Requests refused, by reason.", rejected)
    methods = sorted(s.methods.items())
    per = [(f'method="{_label(n)}"', m) for n, m in methods]
    family("method_calls", "counter", "Calls per method.", [("_total", lbl, m.calls) for lbl, m in per])
    family(
        "method_notifications",
        "counter",
        "Notifications per method.",
        [("_total", lbl, m.notifications) for lbl, m in per],
    )
    family(
        "method_errors", "counter", "Error answers per method.", [("_total", lbl, m.errors) for lbl, m in per]
    )
    samples: list[tuple[str, str, Any]] = []
    for lbl, m in per:
        hist = m.latency
        samples += [("_bucket", f'{lbl},le="{le}"', n) for le, n in _buckets(hist)]
        samples += [("_count", lbl, hist.count), ("_sum", lbl, f"{hist.total_ns / 1e9:.9f}")]
    family("method_latency_seconds", "histogram", "Time to answer, per method.", samples)
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def metrics_methods(stats: ServerStats) -> dict[str, MethodSpec]:
    def metrics() -> str:
        """``rpc.stats`` as OpenMetrics text, with a latency histogram per method."""
        return openmetrics(stats)

    return {"rpc.metrics": MethodSpec.build("rpc.metrics", metrics, access=Access.READ)}
