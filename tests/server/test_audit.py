"""The audit trail: operate/admin calls with redacted secrets, and every denial, by a second uid."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from helpers import LineClient
from helpers.ops import NOBODY_UID, as_nobody, open_for_others, req, served

from jrpc_unix import Access, Methods, Policy, Server


def _methods() -> Methods:
    m = Methods()

    @m.add(access=Access.READ)
    def look() -> str:
        return "looked"

    @m.add(secret=["password"])
    def login(user: str, password: str) -> bool:
        return password == "hunter2"

    @m.add(access=Access.ADMIN)
    def wipe() -> None:
        raise RuntimeError("not today")

    return m


@pytest.fixture
def shared_dir(sock_dir: str) -> str:
    open_for_others(sock_dir)
    return sock_dir


def test_audit_records_operate_and_admin_calls_and_denials(
    shared_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    path = os.path.join(shared_dir, "s.sock")
    policy = Policy(default=Access.READ)
    caplog.set_level(logging.INFO, logger="jrpc_unix.audit")
    with served(path, _methods(), socket_mode=0o666, policy=policy):
        payload = req("look", rid=1) + req("login", ["bob", "hunter2"], rid=2) + req("wipe", rid=3)
        payload += req("rpc.subscribe", {"topic": "progress"}, rid=4)  # read: allowed, not audited
        answers = as_nobody(path, payload, expect=4)["lines"]
        assert [a.get("error", {}).get("code") for a in answers] == [None, -32003, -32003, None]
        with LineClient(path) as admin:  # root: admin
            assert admin.call("login", {"user": "amy", "password": "hunter2"}, rid=5)["result"] is True
            assert admin.call("wipe", rid=6)["error"]["code"] == -32603
            assert admin.call("look", rid=7)["result"] == "looked"
            records = admin.call("rpc.audit", {"limit": 10}, rid=8)["result"]
    records.reverse()  # oldest first
    assert [(r["method"], r["outcome"]) for r in records] == [
        ("login", "denied"),
        ("wipe", "denied"),
        ("login", "ok"),
        ("wipe", "error"),
    ]
    denied, _, ok, failed = records
    assert denied["peer"]["uid"] == NOBODY_UID
    assert denied["params"] == ["bob", "***"]  # positional, redacted by name
    assert denied["detail"] == "login needs operate access; you have read"
    assert ok["params"] == {"user": "amy", "password": "***"}
    assert ok["peer"] == {
        "pid": os.getpid(),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "exe": ok["peer"]["exe"],
    }
    assert ok["duration_ms"] >= 0
    assert failed["error"]["code"] == -32603
    lines = [r.getMessage() for r in caplog.records if r.name == "jrpc_unix.audit"]
    assert len(lines) == 5  # and the last: reading the audit trail is an admin call too
    assert '"method": "rpc.audit"' in lines[-1]
    assert all("hunter2" not in line for line in lines)


def test_without_a_policy_nothing_is_audited_unless_asked(sock_path: str) -> None:
    with served(sock_path, _methods()), LineClient(sock_path) as c:
        c.call("login", ["a", "b"])
        assert c.call("rpc.audit", rid=2)["result"] == []
    with served(sock_path, _methods(), audit=True), LineClient(sock_path) as c:
        c.call("login", ["a", "b"])
        c.call("rpc.log.set", {"logger": "jrpc_unix.audit_test", "level": "INFO"}, rid=2)
        records: list[dict[str, Any]] = c.call("rpc.audit", rid=3)["result"]
        assert [r["method"] for r in records] == ["rpc.log.set", "login"]  # a level change is audited
        assert c.call("rpc.audit", {"limit": -1}, rid=4)["error"]["code"] == -32602


def test_a_secret_must_name_a_parameter() -> None:
    m = Methods()
    with pytest.raises(ValueError, match="secret names no parameter: pasword"):
        m.register("login", lambda user, password: True, secret=["pasword"])
    assert Server(Methods(), audit=False).operations.audit.audited == frozenset()
