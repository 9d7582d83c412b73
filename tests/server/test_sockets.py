"""Several sockets, one service: each with its own mode and a ceiling no policy can lift."""

from __future__ import annotations

import os
import stat

import pytest
from helpers import LineClient
from helpers.ops import as_nobody, open_for_others, req, served

from jrpc_unix import Access, AddressInUseError, Listen, Methods, Policy, ServerSetupError
from jrpc_unix._server.sockets import parse_listen


def _methods() -> Methods:
    m = Methods()

    @m.add(access=Access.READ)
    def look() -> str:
        return "looked"

    @m.add(access=Access.ADMIN)
    def wipe() -> str:
        return "wiped"

    return m


@pytest.fixture
def shared_dir(sock_dir: str) -> str:
    open_for_others(sock_dir)
    return sock_dir


def test_a_read_socket_never_reaches_an_admin_method(shared_dir: str) -> None:
    admin_path, ro_path = os.path.join(shared_dir, "admin.sock"), os.path.join(shared_dir, "ro.sock")
    everyone_admin = Policy(default=Access.ADMIN)  # the ceiling holds whatever the policy says
    ro = Listen(ro_path, socket_mode=0o666, policy=everyone_admin, ceiling=Access.READ)
    with served(admin_path, _methods(), listen=[ro]) as handle:
        assert stat.S_IMODE(os.stat(ro_path).st_mode) == 0o666
        assert stat.S_IMODE(os.stat(admin_path).st_mode) == 0o600
        with LineClient(ro_path) as c:  # root, on the read socket
            assert c.call("look")["result"] == "looked"
            assert c.call("wipe", rid=2)["error"]["data"] == "wipe needs admin access; you have read"
            assert c.call("rpc.connections", rid=3)["error"]["code"] == -32003
        answers = as_nobody(ro_path, req("look", rid=1) + req("wipe", rid=2), expect=2)["lines"]
        assert answers[0]["result"] == "looked"
        assert answers[1]["error"]["code"] == -32003
        with LineClient(admin_path) as c:  # the same service: methods, state, statistics
            assert c.call("wipe")["result"] == "wiped"
            info = c.call("rpc.info", rid=2)["result"]
            assert info["addresses"] == [admin_path, ro_path]
            assert handle.server.stats.calls == 7  # 3 + 2 on the read socket, 2 here
    assert not os.path.exists(ro_path)
    assert not os.path.exists(admin_path)


def test_an_abstract_extra_address_needs_a_policy(sock_path: str) -> None:
    with (
        pytest.raises(ServerSetupError, match="abstract address"),
        served(sock_path, _methods(), listen=[Listen("@jrpc-unix-test-abstract")]),
    ):
        pass
    assert not os.path.exists(sock_path)


def test_a_second_address_in_use_undoes_the_first(sock_path: str, sock_dir: str) -> None:
    other = os.path.join(sock_dir, "other.sock")
    with (
        served(other, _methods()),
        pytest.raises(AddressInUseError, match="already listening on"),
        served(sock_path, _methods(), listen=[Listen(other)]),
    ):
        pass
    assert not os.path.exists(sock_path)


def test_listen_options_from_the_command_line() -> None:
    spec = parse_listen("/run/app/ro.sock,mode=0666,ceiling=read,group=adm")
    assert spec == Listen("/run/app/ro.sock", socket_mode=0o666, socket_group="adm", ceiling=Access.READ)
    for bad in ("/x,ceiling=root", "/x,colour=red", "/x,mode"):
        with pytest.raises(ValueError, match="--listen"):
            parse_listen(bad)
