"""Resumable watches: seq and epoch on every published event, replay after a reconnect from
what the topic kept, ``truncated`` past it, ``restarted`` across a server restart."""

from __future__ import annotations

from typing import Any

from helpers import LineClient
from helpers.ops import served

from jrpc_unix import Methods


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
