"""rpc.metrics is valid OpenMetrics: prometheus_client's own parser reads it, figures intact."""

from __future__ import annotations

from typing import Any

from helpers import LineClient
from helpers.ops import served
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from jrpc_unix import Methods


def _methods() -> Methods:
    m = Methods()

    @m.add
    def ping() -> str:
        return "pong"

    @m.add('we"ird\\name')  # a method name needs escaping in a label
    def weird() -> int:
        raise ValueError("no")

    return m


def test_metrics_parse_as_openmetrics_with_a_histogram_per_method(sock_path: str) -> None:
    with served(sock_path, _methods()) as handle, LineClient(sock_path) as c:
        for rid in range(5):
            c.call("ping", rid=rid)
        c.call('we"ird\\name', rid=9)
        c.call("nope", rid=10)
        text = c.call("rpc.metrics", rid=11)["result"]
        stats = handle.server.stats
    families = {f.name: f for f in text_string_to_metric_families(text)}  # raises if malformed
    assert text.endswith("# EOF\n")

    def value(family: str, suffix: str = "", **labels: str) -> Any:
        for sample in families[family].samples:
            if sample.name == family + suffix and sample.labels == labels:
                return sample.value
        raise AssertionError(f"no {family}{suffix} {labels}")

    assert value("jrpc_unix_calls", "_total") == stats.calls == 8  # rpc.metrics counts itself
    assert value("jrpc_unix_errors", "_total") == 2
    assert value("jrpc_unix_connections_open") == 1
    assert value("jrpc_unix_method_calls", "_total", method="ping") == 5
    assert value("jrpc_unix_method_errors", "_total", method='we"ird\\name') == 1
    hist = families["jrpc_unix_method_latency_seconds"]
    assert hist.type == "histogram"
    buckets = [s for s in hist.samples if s.name.endswith("_bucket") and s.labels["method"] == "ping"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts)
    assert buckets[-1].labels["le"] == "+Inf"
    assert counts[-1] == 5
    assert value("jrpc_unix_method_latency_seconds", "_count", method="ping") == 5
    assert 0 < value("jrpc_unix_method_latency_seconds", "_sum", method="ping") < 5


def test_metrics_bucket_bounds_hold_what_is_below_them() -> None:
    from jrpc_unix._server.builtins_metrics import _buckets
    from jrpc_unix._service.stats import Histogram

    hist = Histogram()
    for ns in (5_000, 40_000, 2_000_000, 30_000_000_000):  # 5 us, 40 us, 2 ms, 30 s
        hist.add(ns)
    got = dict(_buckets(hist))
    assert (got["1e-05"], got["5e-05"], got["0.001"], got["0.0025"], got["10"], got["+Inf"]) == (
        1,
        2,
        2,
        3,
        3,
        4,
    )
