"""The operator's built-ins over a real socket: info, health, connections, in-flight calls,
cancelling and disconnecting another connection, the slow-call log, log levels with a ttl."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import pytest
import trio
from helpers import LineClient, serving, until
from helpers.ops import as_nobody, open_for_others, req, served
from helpers.server import connected

from jrpc_unix import Access, Limits, Methods, Policy, Server


def _methods() -> Methods:
    m = Methods()

    @m.add
    async def hold(n: int = 0) -> str:
        await trio.sleep(30)
        return "held"

    @m.add
    async def slow(seconds: float) -> str:
        await trio.sleep(seconds)
        return "slow"

    @m.add
    def ping() -> str:
        return "pong"

    return m


def _result(answer: dict[str, Any]) -> Any:
    assert "result" in answer, answer
    return answer["result"]


def test_info_names_the_service_and_the_process(sock_path: str) -> None:
    with served(sock_path, Methods(), name="billing", version="2.1") as handle, LineClient(sock_path) as c:
        info = _result(c.call("rpc.info"))
        assert (info["name"], info["version"], info["pid"]) == ("billing", "2.1", os.getpid())
        assert info["addresses"] == [sock_path]
        assert info["library_version"]
        assert info["python"]
        assert info["started"].endswith("Z")
        assert info["uptime_s"] >= 0
        doc = _result(c.call("rpc.discover", rid=2))
        assert doc["info"] == {"title": "billing", "version": "2.1"}  # OpenRPC: the service's
        assert handle.server.operations.info.name == "billing"


def test_health_runs_the_checks_and_says_why_one_fails(sock_path: str) -> None:
    state = {"db": True}

    async def cache() -> str:
        return "3 entries"

    def broken() -> bool:
        raise OSError("disk gone")

    with served(sock_path, Methods()) as handle, LineClient(sock_path) as c:
        server = handle.server
        assert _result(c.call("rpc.health")) == {"status": "serving", "checks": {}}
        server.add_health_check("db", lambda: state["db"])
        server.add_health_check("cache", cache)
        checks = _result(c.call("rpc.health"))["checks"]
        assert checks == {
            "cache": {"status": "serving", "detail": "3 entries"},
            "db": {"status": "serving", "detail": ""},
        }
        state["db"] = False
        health = _result(c.call("rpc.health"))
        assert health["status"] == "not_serving"
        assert health["checks"]["db"] == {"status": "not_serving", "detail": "check failed"}
        server.add_health_check("disk", broken)
        assert _result(c.call("rpc.health"))["checks"]["disk"] == {
            "status": "not_serving",
            "detail": "OSError: disk gone",
        }
        with pytest.raises(ValueError, match="exists already"):
            server.add_health_check("db", lambda: True)


async def test_a_hung_check_fails_at_its_timeout_and_the_topic_sends_changes(
    sock_path: str, autojump_clock: Any
) -> None:
    ok = trio.Event()

    async def upstream() -> bool:
        await ok.wait()  # hangs until set
        return True

    async with serving(sock_path, Methods()) as server, connected(sock_path) as c:
        server.add_health_check("upstream", upstream, timeout=2)
        answer = await c.call("rpc.health")
        assert answer["result"]["checks"]["upstream"] == {
            "status": "not_serving",
            "detail": "no answer within 2 s",
        }
        await c.send(req("rpc.subscribe", {"topic": "health", "interval": 1}, rid=2))
        first = [await c.read_json(), await c.read_json()]
        event = next(m for m in first if m.get("method") == "rpc.event")
        assert event["params"]["data"]["status"] == "not_serving"
        ok.set()
        changed = await c.read_json()  # at the next check, 1 s later (virtual time)
        assert changed["params"]["data"] == {
            "status": "serving",
            "checks": {"upstream": {"status": "serving", "detail": ""}},
        }


async def test_connections_inflight_and_cancel_or_disconnect_another(sock_path: str) -> None:
    async with (
        serving(sock_path, _methods()) as server,
        connected(sock_path) as admin,
        connected(sock_path) as busy,
    ):
        await busy.send(req("hold", rid="h1"))
        await busy.send(req("rpc.subscribe", {"topic": "progress"}, rid=2))
        assert (await busy.read_json())["id"] == 2
        calls = await until(lambda: server.stats.in_flight, "hold running")
        assert calls == 1
        conns = (await admin.call("rpc.connections"))["result"]
        assert [c["id"] for c in conns] == sorted(c["id"] for c in conns)
        mine, other = conns[0], conns[1]
        assert other["in_flight"] == 1
        assert other["subscriptions"] == ["progress"]
        assert other["peer"]["pid"] == os.getpid()
        assert other["peer"]["exe"]
        assert mine["access"] == "admin"
        assert mine["state"] == "open"
        running = (await admin.call("rpc.inflight", rid=3))["result"]
        assert [(r["connection"], r["id"], r["method"]) for r in running] == [(other["id"], "h1", "hold")]
        assert running[0]["age_s"] >= 0
        assert running[0]["last_progress_s"] is None
        cancel = {"id": "h1", "connection": other["id"]}
        assert (await admin.call("rpc.cancel", cancel, rid=4))["result"] is True
        assert (await busy.read_json())["error"]["code"] == -32005
        assert (await admin.call("rpc.cancel", cancel, rid=5))["result"] is False
        unknown = await admin.call("rpc.disconnect", {"id": 10**6}, rid=6)
        assert unknown["error"]["code"] == -32602
        assert (await admin.call("rpc.disconnect", {"id": other["id"]}, rid=7))["result"] is True
        assert await busy.read_to_eof() == b""
        await until(lambda: len(server.connections.live) == 1, "the other connection closed")


async def test_a_connection_that_sent_nothing_is_listed_and_disconnected(sock_path: str) -> None:
    """A connection is made whole only by its first bytes (specs/performance.md, "Memory"); until
    then it is shown with nothing running or queued, has nothing in flight, and can be closed."""
    async with (
        serving(sock_path, _methods()) as server,
        connected(sock_path) as admin,
        connected(sock_path) as silent,
    ):
        await until(lambda: len(server.connections.live) == 2, "both connections accepted")
        assert (await admin.call("ping"))["result"] == "pong"
        [quiet] = [conn for conn in server.connections.live if conn.framing is None]
        assert quiet.parts is None  # no writer, outbox, calls nor nursery yet
        conns = (await admin.call("rpc.connections", rid=2))["result"]
        [shown] = [c for c in conns if c["id"] == quiet.id]
        assert {
            k: shown[k] for k in ("framing", "in_flight", "queued", "subscriptions", "pending_output_bytes")
        } == {
            "framing": None,
            "in_flight": 0,
            "queued": 0,
            "subscriptions": [],
            "pending_output_bytes": 0,
        }
        assert shown["state"] == "open"
        assert (await admin.call("rpc.inflight", rid=3))["result"] == []
        assert (await admin.call("rpc.disconnect", {"id": quiet.id}, rid=4))["result"] is True
        assert await silent.read_to_eof() == b""
        await until(lambda: len(server.connections.live) == 1, "the silent connection closed")
        assert server.stats.connections_open == 1


def test_slowlog_keeps_the_calls_over_the_threshold(sock_path: str) -> None:
    with served(sock_path, _methods(), slow_call_threshold=0.05) as handle, LineClient(sock_path) as c:
        _result(c.call("slow", {"seconds": 0.06}))
        _result(c.call("ping", rid=2))  # quick: not logged
        log = _result(c.call("rpc.slowlog", {"limit": 5}, rid=3))
        assert log["threshold_ms"] == 50.0
        [entry] = log["calls"]
        assert entry["method"] == "slow"
        assert entry["duration_ms"] >= 60
        assert entry["peer"]["pid"] == os.getpid()
        assert entry["time"].endswith("Z")
        assert _result(c.call("rpc.slowlog", {"limit": 0}, rid=4))["calls"] == []
        assert c.call("rpc.slowlog", {"limit": -1}, rid=5)["error"]["code"] == -32602
        assert handle.server.stats.calls == 5


async def test_a_level_set_with_a_ttl_reverts_by_itself(sock_path: str, autojump_clock: Any) -> None:
    name = "jrpc_unix.test_ttl"
    logging.getLogger(name).setLevel(logging.WARNING)
    limits = Limits(idle_timeout=None, shutdown_grace=2.0)  # ten quiet minutes, on trio's clock
    async with serving(sock_path, Methods(), limits=limits) as server, connected(sock_path) as c:
        answer = await c.call("rpc.log.set", {"logger": name, "level": "debug", "ttl": 600})
        assert answer["result"]["level"] == "DEBUG"
        assert answer["result"]["reverts_to"] == "WARNING"
        assert logging.getLogger(name).level == logging.DEBUG
        await trio.sleep(599)
        levels = {e["logger"]: e for e in (await c.call("rpc.log.levels", rid=2))["result"]}
        assert levels[name]["level"] == "DEBUG"
        assert levels[name]["ttl_s"] == pytest.approx(1, abs=0.1)
        await trio.sleep(2)
        assert logging.getLogger(name).level == logging.WARNING  # ten minutes are over
        levels = {e["logger"]: e for e in (await c.call("rpc.log.levels", rid=3))["result"]}
        assert levels[name] == {"logger": name, "level": "WARNING", "effective": "WARNING"}
        for bad in (
            {"logger": name, "level": "LOUD"},
            {"logger": name, "level": "INFO", "ttl": 0},
            {"logger": 3, "level": "INFO"},
        ):
            assert (await c.call("rpc.log.set", bad, rid=4))["error"]["code"] == -32602
        await c.call("rpc.log.set", {"logger": name, "level": "ERROR", "ttl": 60}, rid=5)
        server.stop()  # a stop reverts what a ttl would have
    assert logging.getLogger(name).level == logging.WARNING


@pytest.fixture
def shared_dir(sock_dir: str) -> str:
    open_for_others(sock_dir)
    return sock_dir


def test_each_builtin_has_its_level(shared_dir: str) -> None:
    path = os.path.join(shared_dir, "s.sock")
    policy = Policy(default=Access.READ)
    with served(path, _methods(), socket_mode=0o666, policy=policy):
        names = [
            "rpc.info",
            "rpc.health",
            "rpc.slowlog",
            "rpc.metrics",
            "rpc.connections",
            "rpc.inflight",
            "rpc.log.levels",
        ]
        payload = b"".join(req(n, rid=n) for n in names)
        payload += req("rpc.disconnect", {"id": 1}, rid="rpc.disconnect")
        payload += req("rpc.log.set", {"logger": "x", "level": "DEBUG"}, rid="rpc.log.set")
        payload += req("rpc.cancel", {"id": 1, "connection": 1}, rid="rpc.cancel")
        answers = {a["id"]: a for a in as_nobody(path, payload, expect=len(names) + 3)["lines"]}
    for name in ("rpc.info", "rpc.health", "rpc.slowlog", "rpc.metrics"):
        assert "result" in answers[name], answers[name]
    for name in (
        "rpc.connections",
        "rpc.inflight",
        "rpc.log.levels",
        "rpc.disconnect",
        "rpc.log.set",
        "rpc.cancel",
    ):
        assert answers[name]["error"]["code"] == -32003, answers[name]
    assert logging.getLogger("x").level == logging.NOTSET


def test_builtins_can_be_switched_off(sock_path: str) -> None:
    with (
        served(sock_path, Methods(), disable_builtins=["rpc.disconnect", "rpc.health"]),
        LineClient(sock_path) as c,
    ):
        assert c.call("rpc.disconnect", {"id": 1})["error"]["code"] == -32601
        names = [m["name"] for m in _result(c.call("rpc.discover", rid=2))["methods"]]
        assert "rpc.health" not in names
        assert "rpc.inflight" in names
        topics = [t["topic"] for t in _result(c.call("rpc.topics", rid=3))]
        assert "health" not in topics
    with pytest.raises(ValueError, match=r"no built-in rpc\.nope"):
        Server(Methods(), disable_builtins=["rpc.nope"])


async def test_sd_notify_tells_a_notify_socket_ready_and_stopping(
    sock_path: str, sock_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    notify_path = os.path.join(sock_dir, "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", notify_path)
    try:
        async with serving(sock_path, Methods()) as server:
            await trio.lowlevel.wait_readable(listener)
            ready = listener.recv(4096).decode().split("\n")
            assert ready[0] == "READY=1"
            assert f"STATUS=listening on {sock_path}" in ready
            assert f"MAINPID={os.getpid()}" in ready
            server.stop()
            await trio.lowlevel.wait_readable(listener)
            assert listener.recv(4096).decode().split("\n")[0] == "STOPPING=1"
    finally:
        listener.close()
