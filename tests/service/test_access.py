"""Who may call (specs/protocol.md §8): file permissions, peer credentials, policies, levels.

Real clients run as other users (``setpriv --reuid=nobody --regid=nogroup --clear-groups``, and a
uid with no passwd entry) against a real server, so the tests show that the file's permissions and
the policy actually keep them out, not just that a function returns False.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
import trio
import trio.lowlevel
from helpers import ROOT, TIMEOUT, DemoProcess, LineClient, ok, wait_for
from helpers.ops import (
    NOBODY_GID,
    NOBODY_UID,
    as_nobody,
    connectable,
    needs_other_users,
    open_for_others,
    ping,
    req,
    run_as,
    served,
)

from jrpc_unix import Access, Methods, Peer, Policy, current_context

pytestmark = needs_other_users

#: A uid and gid that no passwd or group entry names.
GHOST = 4242
AS_GHOST = ["setpriv", f"--reuid={GHOST}", f"--regid={GHOST}", "--clear-groups"]

DENIED_CONNECTION = -32003


class Service:
    """Methods at each level, with counters that show whether a handler ran."""

    def __init__(self) -> None:
        self.ran: dict[str, int] = {"act": 0, "rule": 0, "look": 0}
        m = self.methods = Methods()

        def me() -> dict[str, int]:
            peer = current_context().peer
            assert peer is not None
            return {"pid": peer.pid, "uid": peer.uid, "gid": peer.gid}

        m.register("whoami", me, access=Access.READ)
        m.register("ping", lambda: "pong", access=Access.READ)

        async def whoami_async() -> dict[str, int]:
            await trio.lowlevel.checkpoint()
            return me()

        m.register("whoami_async", whoami_async, access=Access.READ)
        m.register("whoami_thread", me, access=Access.READ, blocking=True)

        @m.add(access=Access.READ)
        def look() -> str:
            self.ran["look"] += 1
            return "looked"

        @m.add  # OPERATE: the default level
        def act() -> str:
            self.ran["act"] += 1
            return "acted"

        @m.add(access=Access.ADMIN)
        def rule() -> str:
            self.ran["rule"] += 1
            return "ruled"


@pytest.fixture
def shared_dir(sock_dir: str) -> str:
    open_for_others(sock_dir)
    return sock_dir


@pytest.fixture
def service() -> Service:
    return Service()


def serve_for_others(path: str, service: Service, **options: Any) -> Any:
    options.setdefault("socket_mode", 0o666)  # only the policy decides
    return served(path, service.methods, **options)


def assert_denied_connection(report: dict[str, Any]) -> None:
    assert report["error"] is None, report
    assert len(report["lines"]) == 1, report
    answer = report["lines"][0]
    assert answer["id"] is None
    assert answer["error"]["code"] == DENIED_CONNECTION
    assert answer["error"]["message"] == "Access denied"
    assert f"uid {report['uid']}" in answer["error"]["data"]
    assert report["eof"], "a refused peer must be disconnected"


def assert_denied_call(answer: dict[str, Any], rid: Any, method: str, need: str, have: str) -> None:
    assert answer["id"] == rid
    assert answer["error"]["code"] == -32003
    assert answer["error"]["message"] == "Access denied"
    assert answer["error"]["data"] == f"{method} needs {need} access; you have {have}"


# -- peer credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["whoami", "whoami_async", "whoami_thread"])
def test_handlers_see_the_callers_credentials(sock_path: str, service: Service, method: str) -> None:
    with served(sock_path, service.methods), LineClient(sock_path) as c:
        assert c.call(method) == ok({"pid": os.getpid(), "uid": os.getuid(), "gid": os.getgid()}, 1)


def test_credentials_of_another_process_and_user(shared_dir: str, service: Service) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with serve_for_others(path, service):
        report = as_nobody(path, req("whoami", rid=7) + req("whoami_thread", rid=8), expect=2)
        assert report["uid"] == NOBODY_UID
        mine = {"pid": report["pid"], "uid": NOBODY_UID, "gid": NOBODY_GID}
        assert sorted(report["lines"], key=lambda a: a["id"]) == [ok(mine, 7), ok(mine, 8)]
        assert report["eof"]
        ghost = run_as(AS_GHOST, path, req("whoami", rid=1))
        assert ghost["lines"] == [ok({"pid": ghost["pid"], "uid": GHOST, "gid": GHOST}, 1)]


# -- the socket file's permissions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "group", "admitted"),
    [
        (0o600, None, False),
        (0o660, None, False),  # group root: nobody is not in it
        (0o660, "nogroup", True),
        (0o640, "nogroup", False),  # connect needs write permission
        (0o606, None, True),
        (0o666, None, True),
    ],
)
def test_file_permissions_keep_other_users_out(
    shared_dir: str, service: Service, mode: int, group: str | None, admitted: bool
) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with served(path, service.methods, socket_mode=mode, socket_group=group):
        report = as_nobody(path, req("whoami", rid=1))
        if admitted:
            assert report["error"] is None
            assert report["lines"] == [ok({"pid": report["pid"], "uid": NOBODY_UID, "gid": NOBODY_GID}, 1)]
        else:
            assert report["error"] == "EACCES", report
        assert ping(path)  # the owner always gets in


def test_demo_process_default_socket_is_closed_to_others(shared_dir: str) -> None:
    path = os.path.join(shared_dir, "demo.sock")
    with DemoProcess(path, os.path.join(shared_dir, "log")) as demo:
        assert as_nobody(path, req("ping", rid=1))["error"] == "EACCES"
        assert run_as(AS_GHOST, path, req("ping", rid=1))["error"] == "EACCES"
        assert ping(path)
        assert demo.signal(signal.SIGTERM) == 0


# -- allow-lists ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "admitted"),
    [
        (Policy(allow_users=["root"]), False),
        (Policy(allow_users=[]), False),
        (Policy(allow_users=["nobody"]), True),
        (Policy(allow_users=[NOBODY_UID]), True),
        (Policy(allow_groups=["nogroup"]), True),
        (Policy(allow_groups=[NOBODY_GID]), True),
        (Policy(allow_groups=["root", "adm"]), False),
        (Policy(allow_users=["root"], allow_groups=["nogroup"]), True),
        (Policy(), True),
    ],
    ids=[
        "users-root",
        "users-none",
        "users-nobody",
        "users-65534",
        "groups-nogroup",
        "groups-65534",
        "groups-root-adm",
        "users-or-groups",
        "no-lists",
    ],
)
def test_allow_lists(shared_dir: str, service: Service, policy: Policy, admitted: bool) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with serve_for_others(path, service, policy=policy) as handle:
        report = as_nobody(path, req("look", rid=1))
        if admitted:
            assert report["lines"] == [ok("looked", 1)]
            assert service.ran["look"] == 1
        else:
            assert_denied_connection(report)
            assert service.ran["look"] == 0, "a refused peer's request ran"
            assert handle.server.stats.rejected_connections["access_denied"] == 1
        # Root (and the server's own user) is always admitted, at admin level.
        with LineClient(path) as c:
            assert c.call("rule") == ok("ruled", 1)


def test_refused_peer_that_sends_a_lot_is_still_refused_and_cut_off(
    shared_dir: str, service: Service
) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with serve_for_others(path, service, policy=Policy(allow_users=["root"])):
        flood = b"".join(req("look", rid=i) for i in range(2000))
        report = as_nobody(path, flood, expect=-1)
        assert_denied_connection(report)
        assert service.ran["look"] == 0
        assert ping(path)


def test_uid_without_a_passwd_entry(shared_dir: str, service: Service) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with serve_for_others(path, service, policy=Policy(allow_groups=[GHOST])):
        assert run_as(AS_GHOST, path, req("look", rid=1))["lines"] == [ok("looked", 1)]
        assert_denied_connection(as_nobody(path, req("look", rid=1)))
    with serve_for_others(path, service, policy=Policy(allow_users=[GHOST + 1])):
        assert_denied_connection(run_as(AS_GHOST, path, req("look", rid=1)))


def test_unknown_names_in_a_policy_are_refused_at_once() -> None:
    with pytest.raises(ValueError, match="no such user: 'no-such-user-xyz'"):
        Policy(allow_users=["no-such-user-xyz"])
    with pytest.raises(ValueError, match="no such group: 'no-such-group-xyz'"):
        Policy(grant_groups={"no-such-group-xyz": Access.ADMIN})


# -- access levels --------------------------------------------------------------------------------------


LEVEL_CASES = [
    # policy, what nobody may call (of look/act/rule), nobody's level name
    (Policy(), {"look"}, "read"),
    (Policy(default=Access.OPERATE), {"look", "act"}, "operate"),
    (Policy(grant_users={"nobody": Access.OPERATE}), {"look", "act"}, "operate"),
    (Policy(grant_users={NOBODY_UID: Access.ADMIN}), {"look", "act", "rule"}, "admin"),
    (Policy(grant_groups={"nogroup": Access.OPERATE}), {"look", "act"}, "operate"),
    (Policy(grant_groups={"nogroup": Access.ADMIN}, default=Access.READ), {"look", "act", "rule"}, "admin"),
    (Policy(grant_groups={"root": Access.ADMIN}), {"look"}, "read"),
    (
        Policy(grant_users={"nobody": Access.READ}, grant_groups={"nogroup": Access.OPERATE}),
        {"look", "act"},
        "operate",
    ),
]


@pytest.mark.parametrize(("policy", "allowed", "level"), LEVEL_CASES)
def test_method_levels(
    shared_dir: str, service: Service, policy: Policy, allowed: set[str], level: str
) -> None:
    path = os.path.join(shared_dir, "s.sock")
    needs = {"look": "read", "act": "operate", "rule": "admin"}
    with serve_for_others(path, service, policy=policy):
        payload = req("look", rid=1) + req("act", rid=2) + req("rule", rid=3)
        report = as_nobody(path, payload, expect=3)
        assert report["eof"], "more answers than calls"
        by_id = {a["id"]: a for a in report["lines"]}
        for rid, method in ((1, "look"), (2, "act"), (3, "rule")):
            if method in allowed:
                assert by_id[rid] == ok(
                    method.replace("look", "looked").replace("act", "acted").replace("rule", "ruled"), rid
                )
                assert service.ran[method] == 1
            else:
                assert_denied_call(by_id[rid], rid, method, needs[method], level)
                assert service.ran[method] == 0, f"{method} ran although denied"


def test_denied_notifications_and_batches(shared_dir: str, service: Service) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with serve_for_others(path, service, policy=Policy()):  # nobody: read
        batch = (
            json.dumps(
                [
                    {"jsonrpc": "2.0", "method": "look", "id": "a"},
                    {"jsonrpc": "2.0", "method": "act", "id": "b"},
                    {"jsonrpc": "2.0", "method": "rule"},  # a denied notification: no answer
                    {"jsonrpc": "2.0", "method": "rule", "id": "c"},
                ]
            ).encode()
            + b"\n"
        )
        payload = req("act", notify=True) + batch + req("look", rid="after")
        report = as_nobody(path, payload, expect=2)
        assert report["eof"], "a denied notification must not be answered"
        answer_batch, after = report["lines"]
        assert after == ok("looked", "after")
        by_id = {a["id"]: a for a in answer_batch}
        assert sorted(by_id) == ["a", "b", "c"]
        assert by_id["a"] == ok("looked", "a")
        assert_denied_call(by_id["b"], "b", "act", "operate", "read")
        assert_denied_call(by_id["c"], "c", "rule", "admin", "read")
        assert service.ran == {"look": 2, "act": 0, "rule": 0}


def test_root_is_admin_under_any_policy(sock_path: str, service: Service) -> None:
    policy = Policy(allow_users=[], default=Access.READ)
    with served(sock_path, service.methods, policy=policy), LineClient(sock_path) as c:
        assert c.call("rule") == ok("ruled", 1)
        assert c.call("act", rid=2) == ok("acted", 2)


def test_without_a_policy_everyone_who_can_connect_is_admin(shared_dir: str, service: Service) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with serve_for_others(path, service):
        report = as_nobody(path, req("rule", rid=1))
        assert report["lines"] == [ok("ruled", 1)]


def test_builtins_need_only_read(shared_dir: str, service: Service) -> None:
    path = os.path.join(shared_dir, "s.sock")
    with serve_for_others(path, service, policy=Policy()):
        report = as_nobody(path, req("rpc.stats", rid=1))
        assert "result" in report["lines"][0], report


# -- abstract addresses: the policy is the only gate -----------------------------------------------


@pytest.fixture
def abstract() -> str:
    return f"@jrpc-unix-access-{os.getpid()}"


def test_abstract_address_policy_refuses_other_users(abstract: str, service: Service) -> None:
    with served(abstract, service.methods, policy=Policy(allow_users=["root"])):
        assert_denied_connection(as_nobody(abstract, req("look", rid=1)))
        assert_denied_connection(run_as(AS_GHOST, abstract, req("look", rid=1)))
        assert service.ran["look"] == 0
        with LineClient("\0" + abstract[1:]) as c:
            assert c.call("rule") == ok("ruled", 1)


def test_abstract_address_policy_admits_and_grades(abstract: str, service: Service) -> None:
    with served(abstract, service.methods, policy=Policy(allow_users=["nobody"])):
        report = as_nobody(abstract, req("look", rid=1) + req("act", rid=2), expect=2)
        by_id = {a["id"]: a for a in report["lines"]}
        assert by_id[1] == ok("looked", 1)
        assert_denied_call(by_id[2], 2, "act", "operate", "read")


# -- a whole process: the CLI with a group-readable socket --------------------------------------------


def test_cli_socket_group_lets_the_group_in(shared_dir: str) -> None:
    """``jrpc-unix serve --socket-mode 660 --socket-group nogroup``: nobody gets in, a ghost does not."""
    pytest.importorskip("jrpc_unix._cli.serve")
    path = os.path.join(shared_dir, "cli.sock")
    log = open(os.path.join(shared_dir, "log"), "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jrpc_unix",
            "serve",
            "examples/demo_server.py:methods",
            path,
            "--socket-mode",
            "660",
            "--socket-group",
            "nogroup",
        ],
        cwd=str(ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: proc.poll() is not None or connectable(path), "the CLI server to listen")
        assert proc.poll() is None
        assert as_nobody(path, req("ping", rid=1))["lines"] == [ok("pong", 1)]
        assert run_as(AS_GHOST, path, req("ping", rid=1))["error"] == "EACCES"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=TIMEOUT) == 0
        assert not os.path.lexists(path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=TIMEOUT)
        log.close()


def test_peer_dataclass_is_what_handlers_get() -> None:
    peer = Peer(pid=1, uid=2, gid=3)
    assert (peer.pid, peer.uid, peer.gid) == (1, 2, 3)
    assert Policy(allow_users=[2]).admits(peer)
    assert not Policy(allow_users=[5]).admits(peer)
    assert not Policy().admits(None)
