"""What subscriptions may cost the server (issue 9, point 5), over real sockets and processes.

A connection holds at most ``Limits.max_subscriptions`` subscriptions; its queued events are
counted at what they really cost and share one budget of ``max_pending_output`` bytes; a
produced topic (``stats``) makes no event for a subscriber that does not read.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import textwrap
from typing import Any

import pytest
import trio
import trio.testing
from helpers import LineClient, ServerProcess, TrioLineClient, request, serving
from helpers.ops import open_for_others, python_for_others, read_lines, reader, req, rss_kib, served

from jrpc_unix import Limits, Methods, Server, current_context

DEFAULT_MAX_SUBSCRIPTIONS = 64


def subscribe(c: LineClient, topic: str, rid: int, **params: Any) -> dict[str, Any]:
    """rpc.subscribe's answer (events of earlier subscriptions may come first: skipped)."""
    c.send(request("rpc.subscribe", {"topic": topic, **params}, rid))
    while True:
        msg: dict[str, Any] = c.read_json()
        if msg.get("id") == rid:
            return msg


def test_a_connection_holds_at_most_max_subscriptions(sock_path: str) -> None:
    with served(sock_path, Methods()) as handle, LineClient(sock_path) as c, LineClient(sock_path) as other:
        ids = [
            subscribe(c, "progress", i)["result"]["subscription"] for i in range(DEFAULT_MAX_SUBSCRIPTIONS)
        ]
        refused = subscribe(c, "stats", 100)
        assert refused["error"]["code"] == -32006, refused
        assert refused["error"]["message"] == "Server overloaded"
        assert refused["error"]["data"] == (
            f"too many subscriptions on this connection (limit {DEFAULT_MAX_SUBSCRIPTIONS}); "
            "unsubscribe from one first"
        )
        assert handle.server.stats.subscriptions == DEFAULT_MAX_SUBSCRIPTIONS
        assert handle.server.stats.rejected_requests["max_subscriptions"] == 1
        # Another connection has its own allowance; freeing one here makes room here.
        assert "result" in subscribe(other, "progress", 1)
        assert c.call("rpc.unsubscribe", [ids[0]], rid=101)["result"] is True
        assert "result" in subscribe(c, "progress", 102)


@pytest.mark.skipif(
    os.geteuid() != 0 or python_for_others() is None, reason="needs root, to subscribe as another user"
)
def test_a_user_holds_at_most_max_subscriptions_per_uid(sock_dir: str) -> None:
    """1,024 subscriptions over 16 connections: the uid's allowance is spent, others' are not."""
    open_for_others(sock_dir)
    path = os.path.join(sock_dir, "s.sock")
    per_uid = 1024
    with served(path, Methods(), socket_mode=0o666) as handle, contextlib.ExitStack() as stack:
        n = per_uid // DEFAULT_MAX_SUBSCRIPTIONS + 1
        conns = [stack.enter_context(LineClient(path)) for _ in range(n)]
        first = ""
        for c in conns[:-1]:
            c.send(
                b"".join(
                    json.dumps(request("rpc.subscribe", {"topic": "progress"}, i)).encode() + b"\n"
                    for i in range(DEFAULT_MAX_SUBSCRIPTIONS)
                )
            )
            answers = [c.read_json() for _ in range(DEFAULT_MAX_SUBSCRIPTIONS)]
            assert all("result" in a for a in answers), answers
            first = first or answers[0]["result"]["subscription"]
        refused = subscribe(conns[-1], "progress", 1)
        assert refused["error"]["code"] == -32006, refused
        assert refused["error"]["data"] == (
            f"too many subscriptions from uid {os.getuid()} (limit {per_uid}); unsubscribe from one first"
        )
        assert handle.server.stats.rejected_requests["max_subscriptions_per_uid"] == 1
        # Another user is not locked out by it ...
        (answer,) = read_lines(reader(path, req("rpc.subscribe", {"topic": "progress"}, rid=1), 1))
        assert answer["result"]["topic"] == "progress", answer
        # ... and ending one of ours makes room again.
        assert conns[0].call("rpc.unsubscribe", [first], rid=2)["result"] is True
        assert "result" in subscribe(conns[-1], "progress", 3)


def test_max_subscriptions_is_configurable(sock_path: str) -> None:
    with served(sock_path, Methods(), limits=Limits(max_subscriptions=2)), LineClient(sock_path) as c:
        assert "result" in subscribe(c, "progress", 1)
        assert "result" in subscribe(c, "stats", 2, interval=60)
        assert "(limit 2)" in subscribe(c, "progress", 3)["error"]["data"]


# -- a produced topic pauses while its subscriber does not read ------------------------------------

EVENT = 8000  # bytes of filler in each stats event


async def test_a_stalled_stats_subscriber_costs_no_snapshots(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    """A subscriber that never reads gets events until its output is full, then none are made.

    1000 (virtual) seconds at interval 0.05 would be 20,000 snapshots; what the connection can
    hold (max_pending_output, plus the kernel's socket buffers) is a few hundred 8 KB events.
    """
    made = 0

    def probe() -> str:
        nonlocal made
        made += 1
        return "x" * EVENT

    limits = Limits(idle_timeout=None)
    async with serving(sock_path, Methods(), limits=limits) as server:
        server.stats.add_source("probe", probe)
        c = await TrioLineClient.connect(sock_path)
        try:
            await c.send(request("rpc.subscribe", {"topic": "stats", "interval": 0.05}, 1))
            assert "result" in await c.read_json()
            await trio.sleep(1000)  # the client reads nothing meanwhile
            stalled = made
            bound = (limits.max_pending_output + (4 << 20)) // EVENT
            assert stalled <= bound, f"{stalled} snapshots made for a subscriber that reads nothing"
            # Once it reads again, events flow again: the subscription was paused, not lost.
            for _ in range(stalled + 5):
                line = await c.readline()
                assert b'"topic":"stats"' in line
            assert made > stalled
        finally:
            await c.aclose()


# -- queued events: counted at their real size, one budget per connection --------------------------


def burst_methods() -> Methods:
    methods = Methods()
    methods.add_topic("t", "test events")
    methods.add_topic("u", "more test events")

    @methods.add
    def burst(n: int, topics: list[str], size: int = 98) -> int:
        """Publish n events of ``size + 2`` encoded bytes to each topic, in this one step."""
        server = current_context().server
        for topic in topics:
            for _ in range(n):
                server.publish(topic, "x" * size)
        return n

    return methods


def read_events(c: LineClient, total: int) -> tuple[dict[str, int], dict[str, int]]:
    """Events and dropped counts per subscription, read until they add up to ``total`` (each
    read bounded by the client's timeout: a lost event fails the test, it cannot hang it)."""
    events: dict[str, int] = {}
    dropped: dict[str, int] = {}
    while sum(events.values()) + sum(dropped.values()) < total:
        msg = c.read_json()
        params = msg["params"]
        if msg["method"] == "rpc.dropped":
            dropped[params["subscription"]] = dropped.get(params["subscription"], 0) + params["count"]
        else:
            events[params["subscription"]] = events.get(params["subscription"], 0) + 1
    return events, dropped


def test_the_subscriptions_of_a_connection_share_one_byte_budget(sock_path: str) -> None:
    """5,000 events of 100 B (~180 B queued, with seq, epoch and overhead) fill most of the
    1 MiB budget; the second topic drops its own."""
    n = 5000
    with served(sock_path, burst_methods()) as handle, LineClient(sock_path) as c:
        t = subscribe(c, "t", 1, queue_size=10_000)["result"]["subscription"]
        u = subscribe(c, "u", 2, queue_size=10_000)["result"]["subscription"]
        with LineClient(sock_path) as publisher:
            assert publisher.call("burst", {"n": n, "topics": ["t", "u"]}, rid=3)["result"] == n
        events, dropped = read_events(c, 2 * n)
    assert events[t] == n, (events, dropped)
    assert t not in dropped, (events, dropped)
    assert events[u] + dropped[u] == n, (events, dropped)
    assert (events[t] + events[u]) * 100 <= Limits().max_pending_output
    assert events[u] >= 1  # the newest event of each subscription is always kept
    assert handle.server.stats.events_dropped == dropped[u]


# -- queued events cost what they are counted at: the RSS of a real server -------------------------

SERVER_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path[:0] = [sys.argv[2], sys.argv[2].rsplit('/', 1)[0]]
    from test_push_memory import burst_methods
    from jrpc_unix import run
    run(sys.argv[1], burst_methods())
    """
)


def test_queued_events_cost_about_what_they_are_counted_at(sock_path: str, sock_dir: str) -> None:
    """10,000 queued 100 B events (1 MB counted) must not cost the server tens of MiB.

    orjson's output over-allocates: each of its bytes objects kept costs >= 4 KiB of heap, so
    a queue that keeps them as they are holds ~40 MiB where it counts ~1 MB.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    argv = [sys.executable, "-c", SERVER_SCRIPT, sock_path, here]
    log = os.path.join(sock_dir, "server.log")
    with ServerProcess(argv, log, lambda: os.path.exists(sock_path)) as proc, LineClient(sock_path) as c:
        assert subscribe(c, "t", 1, queue_size=10_000)["result"]["subscription"]
        with LineClient(sock_path) as publisher:
            assert publisher.call("burst", {"n": 100, "topics": ["t"]}, rid=1)["result"] == 100  # warm up
            before = rss_kib(proc.pid)
            assert publisher.call("burst", {"n": 10_000, "topics": ["t"]}, rid=2)["result"] == 10_000
            assert publisher.call("rpc.stats", rid=3)["result"]  # the pumps have run meanwhile
            grown = rss_kib(proc.pid) - before
        print(f"RSS grew {grown} KiB holding 10,000 queued 100 B events")
        assert grown < 8 * 1024, f"the server grew {grown} KiB holding ~1 MB of events"
        # Nothing was lost to get there: the subscriber reads every event.
        events, dropped = read_events(c, 10_100)
        assert sum(events.values()) + sum(dropped.values()) == 10_100
    assert proc.proc.returncode == 0, proc.log()


async def test_stats_subscribers_on_one_interval_share_their_snapshots(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    """40 readers of ``stats`` every second for 10 s: ~10 snapshots (plus each one's first), not 400."""
    made = 0

    def probe() -> int:
        nonlocal made
        made += 1
        return made

    async with serving(sock_path, Methods()) as server:
        server.stats.add_source("probe", probe)
        c = await TrioLineClient.connect(sock_path)
        for i in range(40):
            await c.send(request("rpc.subscribe", {"topic": "stats", "interval": 1}, i))
        seen: dict[str, list[int]] = {}
        while sum(map(len, seen.values())) < 40 * 11:  # each one's first event, then 10 ticks
            msg = await c.read_json()
            if msg.get("method") == "rpc.event":
                seen.setdefault(msg["params"]["subscription"], []).append(msg["params"]["data"]["probe"])
        assert len(seen) == 40
        assert made <= 40 + 12, made
        ticks = [events[1:] for events in seen.values()]
        assert all(t == ticks[0] for t in ticks), "subscribers on one interval see the same snapshots"
        await c.aclose()


def test_publish_refuses_a_produced_topic() -> None:
    with pytest.raises(ValueError, match=r"^topic 'stats' has a producer, which makes its events$"):
        Server(Methods()).publish("stats", {"made": "up"})
