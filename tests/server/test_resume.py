"""Resumable watches: seq and epoch on every published event, replay after a reconnect from
what the topic kept, ``truncated`` past it, ``restarted`` across a server restart."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import TIMEOUT, LineClient, wait_for
from helpers.ops import served

from jrpc_unix import Client, ConnectionClosedError, Methods


def _methods() -> Methods:
    m = Methods()
    m.add_topic("jobs", "job changes")
    return m


def _subscribe(c: LineClient, rid: int, **params: Any) -> dict[str, Any]:
    answer = c.call("rpc.subscribe", {"topic": "jobs", **params}, rid=rid)
    assert "result" in answer, answer
    result: dict[str, Any] = answer["result"]
    return result


def _events(c: LineClient, n: int) -> list[tuple[Any, int, str]]:
    out = []
    for _ in range(n):
        params = c.read_json()["params"]
        out.append((params["data"], params["seq"], params["epoch"]))
    return out


def test_a_subscriber_resumes_after_the_last_seq_it_saw(sock_path: str) -> None:
    with served(sock_path, _methods(), topic_history=5) as handle:
        server = handle.server
        with LineClient(sock_path) as c:
            _subscribe(c, 1)
            server.publish("jobs", "a")
            server.publish("jobs", "b")
            seen = _events(c, 2)
        assert seen == [("a", 1, server.epoch), ("b", 2, server.epoch)]
        for name in "cde":  # while the subscriber is away
            server.publish("jobs", name)
        with LineClient(sock_path) as c:
            answer = _subscribe(c, 2, since=2, epoch=server.epoch)
            assert answer["truncated"] is False
            assert answer["restarted"] is False
            assert (answer["seq"], answer["oldest"], answer["epoch"]) == (5, 1, server.epoch)
            server.publish("jobs", "f")  # then live, in order
            assert [e[:2] for e in _events(c, 4)] == [("c", 3), ("d", 4), ("e", 5), ("f", 6)]
        for n in range(7, 12):
            server.publish("jobs", n)
        with LineClient(sock_path) as c:  # seq 3 is long gone: the ring keeps 7..11
            answer = _subscribe(c, 3, since=3, epoch=server.epoch)
            assert (answer["truncated"], answer["oldest"]) == (True, 7)
            assert [e[1] for e in _events(c, 5)] == [7, 8, 9, 10, 11]
            caught_up = _subscribe(c, 4, since=11)
            assert (caught_up["truncated"], caught_up["seq"]) == (False, 11)


def test_an_epoch_from_before_a_restart_says_so(sock_path: str) -> None:
    with served(sock_path, _methods()) as handle:
        old_epoch = handle.server.epoch
        with LineClient(sock_path) as c:
            _subscribe(c, 1)
            handle.server.publish("jobs", "before")
            assert _events(c, 1)[0][1:] == (1, old_epoch)
    with served(sock_path, _methods()) as handle, LineClient(sock_path) as c:
        assert handle.server.epoch != old_epoch
        answer = _subscribe(c, 1, since=1, epoch=old_epoch)
        assert answer["restarted"] is True
        assert answer["epoch"] == handle.server.epoch
        handle.server.publish("jobs", "after")
        assert _events(c, 1) == [("after", 1, handle.server.epoch)]


def test_bad_resumes_are_refused(sock_path: str) -> None:
    with served(sock_path, _methods()), LineClient(sock_path) as c:
        for rid, params in enumerate(
            [
                {"topic": "jobs", "since": -1},
                {"topic": "jobs", "since": "3"},
                {"topic": "jobs", "since": True},
                {"topic": "jobs", "since": 1, "epoch": 5},
                {"topic": "stats", "since": 1},
                {"topic": "progress", "since": 1},
            ]
        ):
            answer = c.call("rpc.subscribe", params, rid=rid)
            assert answer["error"]["code"] == -32602, answer
        assert c.call("rpc.stats", rid=99)["result"]["server"]["subscriptions"] == 0


def test_a_client_subscription_resumes_by_itself_when_asked(sock_path: str) -> None:
    with served(sock_path, _methods()) as handle, Client(sock_path, timeout=TIMEOUT) as client:
        server = handle.server
        sub = client.subscribe("jobs", resume=True)
        assert (sub.seq, sub.epoch) == (0, server.epoch)  # where a resume starts, before any event
        server.publish("jobs", "a")
        assert next(sub) == "a"
        with LineClient(sock_path) as admin:  # cut the subscriber's connection
            mine = [c["id"] for c in admin.call("rpc.connections")["result"] if c["subscriptions"]]
            assert admin.call("rpc.disconnect", {"id": mine[0]}, rid=2)["result"] is True
        wait_for(lambda: server.stats.subscriptions == 0, "the server ended the subscription")
        server.publish("jobs", "b")  # while the subscriber is away
        assert next(sub) == "b"  # reconnected, resumed after seq 1
        assert sub.resumed == {
            "epoch": server.epoch,
            "seq": 2,
            "truncated": False,
            "oldest": 1,
            "restarted": False,
        }
        server.publish("jobs", "c")
        assert (next(sub), sub.seq) == ("c", 3)
    with served(sock_path, _methods()), Client(sock_path, timeout=TIMEOUT) as client:
        plain = client.subscribe("jobs")  # not asked to resume: a lost connection ends it
        with LineClient(sock_path) as admin:
            mine = [c["id"] for c in admin.call("rpc.connections")["result"] if c["subscriptions"]]
            admin.call("rpc.disconnect", {"id": mine[0]}, rid=2)
        with pytest.raises(ConnectionClosedError):
            next(plain)
