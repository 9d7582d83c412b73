"""Topics have access levels, and access is checked before params (issue 9, point 12).

Clients run as ``nobody`` (``setpriv``) against a real server whose policy gives them ``read``
(or what a test grants), as in test_access.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import LineClient, demo_module, wait_for
from helpers.ops import (
    NOBODY_UID,
    as_nobody,
    needs_other_users,
    open_for_others,
    read_lines,
    reader,
    req,
    served,
)

from jrpc_unix import Access, Methods, Policy, Server

pytestmark = needs_other_users

READ = Policy()  # everyone but root and the server's user: read
OPERATE = Policy(grant_users={NOBODY_UID: Access.OPERATE})


def by_id(path: str, payload: bytes, expect: int) -> dict[Any, dict[str, Any]]:
    """The answers (not events) among the first ``expect`` lines nobody reads, by id."""
    return {a["id"]: a for a in read_lines(reader(path, payload, expect)) if "id" in a}


@pytest.fixture
def shared_dir(sock_dir: str) -> str:
    open_for_others(sock_dir)
    return sock_dir


@pytest.fixture(autouse=True)
def _demo_config_restored() -> Iterator[None]:
    """The in-process demo keeps its config in ``jrpc_unix.demo.config``: put it back, so a
    later test of the demo (the CLI's in-process tour) sees the service as it starts."""
    from jrpc_unix import demo

    saved = dict(demo.config)
    yield
    demo.config.clear()
    demo.config.update(saved)


def demo_for_others(path: str, policy: Policy) -> Any:
    return served(path, demo_module().methods, socket_mode=0o666, policy=policy)


def denied(answer: dict[str, Any], rid: Any, data: str) -> None:
    assert answer["id"] == rid, answer
    assert answer["error"] == {"code": -32003, "message": "Access denied", "data": data}, answer


# -- the demo's config topic: what config.get refuses, rpc.subscribe refuses --------------------


def test_a_read_caller_may_not_subscribe_to_config(shared_dir: str) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with demo_for_others(path, READ) as handle:
        payload = (
            req("config.get", {"key": "level"}, rid=1)
            + req("rpc.subscribe", {"topic": "config"}, rid=2)
            + req("rpc.subscribe", {"topic": "stats", "interval": 60}, rid=3)
            + req("rpc.subscribe", {"topic": "progress"}, rid=4)
            + req("rpc.topics", rid=5)
        )
        answers = by_id(path, payload, 6)  # (stats' first event may come before the answers)
        denied(answers[1], 1, "config.get needs operate access; you have read")
        denied(answers[2], 2, "topic 'config' needs operate access; you have read")
        assert answers[3]["result"]["topic"] == "stats"  # the built-in topics stay read
        assert answers[4]["result"]["topic"] == "progress"
        assert [t["topic"] for t in answers[5]["result"]] == [
            "stats",
            "progress",
            "health",
            "settings",
        ]  # not config
        assert handle.server.stats.rejected_requests["access_denied"] == 2


def test_an_operate_caller_gets_config_events(shared_dir: str) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with demo_for_others(path, OPERATE) as handle:
        proc = reader(path, req("rpc.subscribe", {"topic": "config"}, rid=1), 2)
        wait_for(lambda: handle.server.stats.subscriptions == 1, "nobody's subscription")
        with LineClient(path) as root:
            assert root.call("config.set", {"key": "color", "value": "red"})["result"] is None
        answer, event = read_lines(proc)
        assert answer["result"]["topic"] == "config", answer
        assert event["params"]["data"] == {"key": "color", "value": "red", "previous": None}


# -- declared levels, the default, and what rpc.topics shows ------------------------------------


def leveled_methods() -> Methods:
    methods = Methods()
    methods.add_topic("news", "for everyone", access=Access.READ)
    methods.add_topic("ops", "for operators")  # the default: the highest method level, >= operate
    methods.add_topic("keys", "for admins", access=Access.ADMIN)

    @methods.add(access=Access.READ)
    def look() -> str:
        return "looked"

    @methods.add
    def act(n: int) -> int:
        return n

    return methods


@pytest.mark.parametrize(
    ("grant", "visible"),
    [
        (Access.READ, ["news", "stats", "progress", "health"]),
        (Access.OPERATE, ["news", "ops", "stats", "progress", "health", "added"]),
        (Access.ADMIN, ["news", "ops", "keys", "stats", "progress", "health", "added"]),
    ],
)
def test_each_topic_has_a_level_and_rpc_topics_shows_the_callers(
    shared_dir: str, grant: Access, visible: list[str]
) -> None:
    path = os.path.join(shared_dir, "s.sock")
    policy = Policy(grant_users={NOBODY_UID: grant})
    with served(path, leveled_methods(), socket_mode=0o666, policy=policy) as handle:
        handle.server.add_topic("added", description="added per server", access=Access.OPERATE)
        listed = as_nobody(path, req("rpc.topics", rid=1))["lines"][0]["result"]
        assert sorted(t["topic"] for t in listed) == sorted(visible)
        levels = {t["topic"]: t["access"] for t in listed}
        assert {k: v for k, v in levels.items() if k in ("news", "stats", "progress")} == {
            "news": "read",
            "stats": "read",
            "progress": "read",
        }
        payload = b"".join(
            req("rpc.subscribe", {"topic": name}, rid=name) for name in ("news", "ops", "keys", "added")
        )
        answers = by_id(path, payload, 4)
        needs = {"news": "read", "ops": "operate", "keys": "admin", "added": "operate"}
        for name, need in needs.items():
            if name in visible:
                assert answers[name]["result"]["topic"] == name
            else:
                have = grant.name.lower()
                denied(answers[name], name, f"topic {name!r} needs {need} access; you have {have}")


def test_the_default_level_is_that_of_the_most_guarded_method(sock_path: str) -> None:
    methods = leveled_methods()
    assert Server(methods).topics["ops"].access is Access.OPERATE

    @methods.add(access=Access.ADMIN)
    def rule() -> str:
        return "ruled"

    server = Server(methods, topics={"declared": "per server"})
    levels = {name: topic.access for name, topic in server.topics.items()}
    assert levels == {
        "stats": Access.READ,
        "progress": Access.READ,
        "health": Access.READ,
        "news": Access.READ,
        "ops": Access.ADMIN,
        "keys": Access.ADMIN,
        "declared": Access.ADMIN,
    }
    only_read = Methods()
    only_read.register("look", lambda: 1, access=Access.READ)
    only_read.add_topic("t")
    assert Server(only_read).topics["t"].access is Access.OPERATE  # never below a method's default


def test_an_unknown_topic_lists_only_the_callers_topics(shared_dir: str) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with demo_for_others(path, READ):
        answer = as_nobody(path, req("rpc.subscribe", {"topic": "nope"}, rid=1))["lines"][0]
        assert answer["error"]["code"] == -32602
        assert answer["error"]["data"] == "no topic 'nope'; topics: health, progress, settings, stats"


# -- access before params: a refused caller learns nothing about a method's params ----------------


def test_access_is_checked_before_params(shared_dir: str) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with demo_for_others(path, READ):
        payload = (
            req("config.set", {"wrong": 1}, rid=1)  # bad params for an operate method
            + req("config.set", [1, 2, 3], rid=2)
            + req("rpc.subscribe", {"topic": "config", "queue_size": "x"}, rid=3)  # a topic above read
            + req("rpc.subscribe", {"topic": "config", "bogus": 1}, rid=4)
            + req("rpc.subscribe", {"topic": "stats", "bogus": 1}, rid=5)  # one it may have: checked
        )
        answers = {a["id"]: a for a in as_nobody(path, payload, expect=5)["lines"]}
        denied(answers[1], 1, "config.set needs operate access; you have read")
        denied(answers[2], 2, "config.set needs operate access; you have read")
        denied(answers[3], 3, "topic 'config' needs operate access; you have read")
        denied(answers[4], 4, "topic 'config' needs operate access; you have read")
        assert answers[5]["error"]["code"] == -32602
        assert "bogus" in answers[5]["error"]["data"]
    assert demo_module().config.get("wrong") is None


def test_seed_style_handler_is_guarded_before_params(shared_dir: str) -> None:
    """Names served by a ``handler`` fallback need operate, like any method that names no level."""
    path = os.path.join(shared_dir, "s.sock")
    methods = Methods(handler=lambda cmd, args: {"cmd": cmd})
    with served(path, methods, socket_mode=0o666, policy=READ):
        answer = as_nobody(path, req("anything", {"x": 1}, rid=1))["lines"][0]
        denied(answer, 1, "anything needs operate access; you have read")
