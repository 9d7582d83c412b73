"""The server's own rpc.* methods refuse bad params with -32602, never -32603 or a wrong match."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from helpers import LineClient
from helpers.ops import served

from jrpc_unix import Methods


def _methods(started: list[int]) -> Methods:
    m = Methods()

    @m.add
    async def hold() -> str:
        started.append(1)
        await trio.sleep(30)
        return "held"

    return m


def _invalid(answer: dict[str, Any], rid: int, text: str) -> None:
    assert answer["id"] == rid
    assert answer["error"]["code"] == -32602, answer
    assert text in answer["error"]["data"]


@pytest.mark.parametrize("interval", ["x", True, 0.001, -1, None])
def test_stats_topic_with_a_bad_interval_is_refused_when_subscribing(sock_path: str, interval: Any) -> None:
    with served(sock_path, Methods()) as handle, LineClient(sock_path) as c:
        answer = c.call("rpc.subscribe", {"topic": "stats", "interval": interval}, rid=1)
        _invalid(answer, 1, "interval must be a number of seconds >= 0.05")
        assert handle.server.stats.subscriptions == 0
        subscribed = c.call("rpc.subscribe", {"topic": "stats", "interval": 0.05}, rid=2)
        assert subscribed["result"]["topic"] == "stats"
        event = c.read_json()
        assert event["method"] == "rpc.event"
        assert event["params"]["topic"] == "stats"


@pytest.mark.parametrize("bad", [[1], {"a": 1}, True, False])
def test_cancel_needs_a_request_id(sock_path: str, bad: Any) -> None:
    started: list[int] = []
    with served(sock_path, _methods(started)), LineClient(sock_path) as c:
        c.send({"jsonrpc": "2.0", "method": "hold", "id": 1})
        while not started:  # the call is running once the next answer comes back
            assert c.call("rpc.topics", rid=99)["id"] == 99
        _invalid(c.call("rpc.cancel", {"id": bad}, rid=2), 2, "id must be a request id")
        assert c.call("rpc.cancel", {"id": 1}, rid=3)["result"] is True  # True did not match id 1
        assert c.read_json()["error"]["code"] == -32005


def test_unsubscribe_needs_a_string(sock_path: str) -> None:
    with served(sock_path, Methods()), LineClient(sock_path) as c:
        assert "subscription" in c.call("rpc.subscribe", {"topic": "progress"}, rid=1)["result"]
        _invalid(c.call("rpc.unsubscribe", [[1]], rid=2), 2, "subscription must be a string")
        assert c.call("rpc.unsubscribe", ["s-none"], rid=3)["result"] is False


def test_a_failing_producer_ends_its_subscription_with_a_notice(sock_path: str) -> None:
    methods = Methods()

    async def flaky() -> Any:
        yield 1
        yield 2
        raise RuntimeError("the source went away")

    methods.add_topic("flaky", "two events, then a failure", flaky)
    with served(sock_path, methods) as handle, LineClient(sock_path) as c:
        sid = c.call("rpc.subscribe", {"topic": "flaky"}, rid=1)["result"]["subscription"]
        events = [c.read_json() for _ in range(3)]
        assert [e["params"].get("data") for e in events[:2]] == [1, 2]
        assert events[2]["method"] == "rpc.ended"
        assert events[2]["params"]["subscription"] == sid
        assert "error_id" in events[2]["params"]
        assert c.call("rpc.topics", rid=2)["id"] == 2  # the connection goes on
        assert handle.server.stats.subscriptions == 0


def test_a_service_adds_its_own_figures_to_rpc_stats(sock_path: str) -> None:
    queue = [1, 2, 3]
    with served(sock_path, Methods()) as handle, LineClient(sock_path) as c:
        handle.server.stats.add_source("queue", lambda: {"length": len(queue)})
        assert c.call("rpc.stats", rid=1)["result"]["queue"] == {"length": 3}
        queue.append(4)
        assert c.call("rpc.stats", rid=2)["result"]["queue"] == {"length": 4}
    with pytest.raises(ValueError, match="'server' is taken by the server's own figures"):
        handle.server.stats.add_source("server", dict)
