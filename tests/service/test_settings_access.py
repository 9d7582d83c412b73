"""Settings seen from below admin (issue 12): secrets never shown (answers, events, log, history,
server log), per-setting access, and the ``settings`` topic never reaching a caller below its
level. Clients run as ``nobody`` (``setpriv``) against a real server, as in test_topic_access.py.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest
from helpers import LineClient, wait_for
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

from jrpc_unix import Access, Methods, Policy, Settings, setting

pytestmark = needs_other_users

SECRET = "s3cr3t-token-value"


class Guarded(Settings):
    token: str = setting("", secret=True, access=Access.ADMIN)
    workers: int = setting(4, ge=1, le=64)


def served_settings(path: str, policy: Policy, **mount: Any) -> tuple[Any, Guarded]:
    s = Guarded()
    methods = Methods()
    s.mount(methods, **mount)
    open_for_others(os.path.dirname(path))
    return served(path, methods, socket_mode=0o666, policy=policy), s


def lines_of(path: str, payload: bytes, expect: int) -> dict[Any, dict[str, Any]]:
    return {a["id"]: a for a in as_nobody(path, payload, expect)["lines"]}


def test_secrets_are_never_shown_below_admin(sock_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "jrpc_unix.settings")
    path = os.path.join(sock_dir, "s.sock")
    grant = Policy(grant_users={NOBODY_UID: Access.OPERATE})
    server, s = served_settings(path, grant)
    with server as handle:
        proc = reader(path, req("rpc.subscribe", {"topic": "settings"}, rid=1), 2)
        wait_for(lambda: handle.server.stats.subscriptions == 1, "nobody's subscription")
        with LineClient(path) as root:  # root is admin: it may set and read the secret
            done = root.call("settings.set", {"values": {"token": SECRET, "workers": 5}})
            assert done["result"]["changes"][0] == {"name": "token", "old": "", "new": SECRET}
            assert root.call("settings.get", {"names": ["token"]})["result"] == {"token": SECRET}
        answer, event = read_lines(proc)
        assert answer["result"]["topic"] == "settings"
        assert event["params"]["data"]["changes"][0] == {
            "name": "token",
            "old": "<redacted>",
            "new": "<redacted>",
        }
        payload = (
            req("settings.get", rid=1)
            + req("settings.describe", rid=2)
            + req("settings.log", rid=3)
            + req("settings.diff", rid=4)
            + req("settings.set", {"values": {"token": "mine"}}, rid=5)
            + req("settings.set", {"values": {"workers": 6}}, rid=6)
        )
        answers = lines_of(path, payload, 6)
    assert SECRET not in str(answers)
    assert answers[1]["result"]["token"] == "<redacted>"
    assert answers[2]["result"][0]["value"] == "<redacted>"
    assert answers[2]["result"][0]["access"] == "admin"
    assert answers[3]["result"][0]["changes"][0]["new"] == "<redacted>"
    assert answers[4]["result"][0]["running"] == "<redacted>"
    assert answers[5]["error"]["code"] == -32003
    assert answers[5]["error"]["data"] == "changing token needs admin access; you have operate"
    assert answers[6]["result"]["changes"] == [{"name": "workers", "old": 5, "new": 6}]
    assert s.token == SECRET  # the refused change changed nothing
    assert "settings version 1" in caplog.text
    assert SECRET not in caplog.text


def test_the_topic_never_reaches_a_caller_below_its_level(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    server, _ = served_settings(path, Policy(), read=Access.OPERATE)  # nobody: read
    with server as handle:
        payload = req("rpc.subscribe", {"topic": "settings"}, rid=1) + req("settings.get", rid=2)
        answers = lines_of(path, payload, 2)
        assert answers[1]["error"]["code"] == -32003
        assert answers[1]["error"]["data"] == "topic 'settings' needs operate access; you have read"
        assert answers[2]["error"]["code"] == -32003
        assert handle.server.stats.subscriptions == 0
