"""The operator's commands against a real server: JSON when piped, tables on a terminal,
``health``'s exit code, ``log --ttl``, ``connections --kill`` and ``stats --openmetrics``."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import stat
import subprocess
from typing import Any

import pytest
import trio
from helpers import ROOT, TIMEOUT, LineClient, ServerProcess, wait_for
from helpers.ops import served
from helpers.terminal import CLI, on_terminal
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from jrpc_unix import Methods


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *argv], capture_output=True, text=True, timeout=TIMEOUT, cwd=str(ROOT))


def _methods() -> Methods:
    m = Methods()

    @m.add
    async def hold() -> str:
        await trio.sleep(30)
        return "held"

    return m


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_info_and_health_as_json_when_piped(sock_path: str) -> None:
    state = {"ok": True}
    with served(sock_path, Methods(), name="svc", version="3") as handle:
        handle.server.add_health_check("db", lambda: state["ok"])
        info = _json(run("info", sock_path))
        assert (info["name"], info["version"], info["addresses"]) == ("svc", "3", [sock_path])
        health = run("health", sock_path)
        assert health.returncode == 0
        assert json.loads(health.stdout)["status"] == "serving"
        state["ok"] = False
        failing = run("health", sock_path)
        assert failing.returncode == 1, failing.stderr
        assert json.loads(failing.stdout)["checks"]["db"]["status"] == "not_serving"


def test_tables_on_a_terminal(sock_path: str) -> None:
    with served(sock_path, _methods(), name="svc"):
        code, out, _ = on_terminal("info", sock_path, stdout=True)
        assert code == 0
        assert b"name             svc" in out
        code, out, _ = on_terminal("health", sock_path, stdout=True)
        assert code == 0
        assert b"status: serving" in out
        code, out, _ = on_terminal("connections", sock_path, stdout=True)
        assert code == 0
        assert re.search(rb"^id +peer +access +age s", out, re.M)
        assert b"access" in out
        code, out, _ = on_terminal("slowlog", sock_path, stdout=True)
        assert code == 0
        assert b"threshold: 100.000 ms" in out
        assert b"(none)" in out


def test_log_sets_a_level_with_a_ttl_and_shows_it(sock_path: str) -> None:
    name = "jrpc_unix.test_cli_ttl"
    with served(sock_path, Methods()):
        row = _json(run("log", sock_path, name, "debug", "--ttl", "600"))
        assert (row["logger"], row["level"], row["reverts_to"]) == (name, "DEBUG", "NOTSET")
        levels = {e["logger"]: e for e in _json(run("log", sock_path))}
        assert levels[name]["level"] == "DEBUG"
        assert 0 < levels[name]["ttl_s"] <= 600
        usage = run("log", sock_path, name)
        assert usage.returncode == 2
        assert "give a LEVEL" in usage.stderr
        bad = run("log", sock_path, name, "loud")
        assert bad.returncode == 1
        assert "level must be one of" in bad.stderr
    assert logging.getLogger(name).level == logging.NOTSET  # the stop reverted it


def test_inflight_and_connections_kill(sock_path: str) -> None:
    with served(sock_path, _methods()) as handle, LineClient(sock_path) as busy:
        busy.send({"jsonrpc": "2.0", "method": "hold", "id": 7})
        wait_for(lambda: handle.server.stats.in_flight, "hold running")
        [call] = _json(run("inflight", sock_path))
        assert (call["id"], call["method"]) == (7, "hold")
        conns = _json(run("connections", sock_path))
        [theirs] = [c for c in conns if c["id"] == call["connection"]]
        assert theirs["in_flight"] == 1
        killed = run("connections", sock_path, "--kill", str(theirs["id"]))
        assert killed.returncode == 0
        assert killed.stdout.strip() == "true"
        assert busy.read_to_eof() == b""
        missing = run("connections", sock_path, "--kill", "999999")
        assert missing.returncode == 1
        assert "no connection 999999" in missing.stderr


@pytest.mark.parametrize("table", [False, True])
def test_stats_openmetrics_for_a_textfile_collector(sock_path: str, table: bool) -> None:
    with served(sock_path, _methods()):
        if table:
            code, out, _ = on_terminal("stats", "--openmetrics", sock_path, stdout=True)
            text = out.decode().replace("\r\n", "\n")
            assert code == 0
        else:
            done = run("stats", "--openmetrics", sock_path)
            assert done.returncode == 0, done.stderr
            text = done.stdout
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"jrpc_unix_calls", "jrpc_unix_method_latency_seconds"} <= names


def test_audit_lists_the_records(sock_path: str) -> None:
    with served(sock_path, Methods(), audit=True):
        assert run("log", sock_path, "jrpc_unix.cli_audit", "INFO").returncode == 0
        [record] = _json(run("audit", sock_path, "--limit", "1"))
        assert (record["method"], record["outcome"]) == ("rpc.log.set", "ok")
        code, out, _ = on_terminal("audit", sock_path, stdout=True)
        assert code == 0
        assert b"rpc.log.set" in out
        assert b"outcome" in out


def test_serve_listens_on_several_sockets_with_a_ceiling(sock_dir: str) -> None:
    path, ro = os.path.join(sock_dir, "admin.sock"), os.path.join(sock_dir, "ro.sock")
    argv = [
        "serve",
        "jrpc_unix.demo:methods",
        path,
        "--listen",
        f"{ro},mode=0644,ceiling=read",
        "--name",
        "demo",
    ]
    ready = lambda: os.path.exists(path) and os.path.exists(ro)  # noqa: E731
    with ServerProcess([*CLI, *argv], os.path.join(sock_dir, "log"), ready) as server:
        assert stat.S_IMODE(os.stat(ro).st_mode) == 0o644
        info = _json(run("info", ro))
        assert (info["name"], info["addresses"]) == ("demo", [path, ro])
        denied = run("connections", ro)
        assert denied.returncode == 1
        assert "rpc.connections needs admin access; you have read" in denied.stderr
        assert run("connections", path).returncode == 0
        assert server.signal(signal.SIGTERM) == 0
    assert not os.path.exists(ro)
    bad = run("serve", "jrpc_unix.demo:methods", path, "--listen", f"{ro},ceiling=root")
    assert bad.returncode == 2
    assert "ceiling must be read, operate or admin" in bad.stderr
