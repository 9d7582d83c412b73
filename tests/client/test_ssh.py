"""``ssh://`` addresses against a real sshd on 127.0.0.1 (helpers.sshd): both clients, the remote
sides (the inline python3 relay, ``jrpc-unix bridge``, a forced command), the peer the server
sees (the login user), and ssh's failures as ConnectError quoting ssh."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import trio
from helpers import TIMEOUT, DemoProcess, serving, short_tmpdir
from helpers.ops import basic_methods, served
from helpers.sshd import REMOTE_USER, Sshd

from jrpc_unix import (
    Access,
    Call,
    Client,
    ConnectError,
    Methods,
    Notify,
    Policy,
    RpcError,
    RpcTimeoutError,
    current_context,
    open_client,
)
from jrpc_unix._address import parse_ssh
from jrpc_unix._client.fleet_trio import AsyncFleet
from jrpc_unix._client.relay import EXIT_CONNECT, EXIT_ENDED


@pytest.fixture
def ssh_env(sshd: Sshd, monkeypatch: pytest.MonkeyPatch) -> Sshd:
    monkeypatch.setenv("JRPC_UNIX_SSH", f"ssh -F {sshd.config}")
    return sshd


@pytest.fixture
def open_dir() -> Iterator[str]:
    """A short directory other users may enter (the remote login user connects in it)."""
    with short_tmpdir() as d:
        os.chmod(d, 0o755)
        yield d


def test_parse_ssh_addresses() -> None:
    assert parse_ssh("ssh://u@web01:2222/run/a.sock") == ("u", "web01", 2222, "/run/a.sock")
    assert parse_ssh("ssh://[::1]/run/a.sock") == (None, "::1", None, "/run/a.sock")
    assert parse_ssh("ssh://h/@abstract") == (None, "h", None, "@abstract")
    for bad, why in [
        ("ssh://h", "no socket path"),
        ("ssh://-oProxyCommand=x/a", "no host"),
        ("ssh://h:0/a", "port"),
        ("ssh://@h/a", "empty user"),
    ]:
        with pytest.raises(ValueError, match=why):
            parse_ssh(bad)


def test_bad_ssh_address_is_a_connect_error() -> None:
    with Client("ssh://h:99999/a.sock") as client, pytest.raises(ConnectError, match="port"):
        client.call("ping")


def test_calls_through_the_python3_relay(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    said: list[str] = []
    with Client(f"ssh://h1{shared_demo.path}", timeout=TIMEOUT, log=said.append) as client:
        assert client.call("ping") == "pong"
        assert client.call("echo", msg={"é": [1, None]}) == {"é": [1, None]}
        client.notify("counter.incr")
        assert client.batch(Notify("counter.incr"), *[Call("echo", n) for n in range(3)]) == [0, 1, 2]
        assert client.call("counter.get") >= 2
        with client.subscribe("stats", interval=0.05) as sub:
            assert "server" in next(iter(sub))
        with pytest.raises(RpcError, match="Method not found"):
            client.call("nope")
    assert "remote command" in said[0]
    assert said[-1].endswith("remote side: python3 relay; ssh exit status 0")


def test_bridge_is_preferred_where_installed(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    said: list[str] = []
    with Client(f"ssh://hb{shared_demo.path}", timeout=TIMEOUT, log=said.append) as client:
        assert client.call("ping") == "pong"
    assert said[-1].endswith("remote side: jrpc-unix bridge; ssh exit status 0")


def test_control_master_shares_one_connection(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    for _ in range(2):
        with Client(f"ssh://cm{shared_demo.path}", timeout=TIMEOUT) as client:
            assert client.call("ping") == "pong"
    check = subprocess.run(["ssh", "-F", str(ssh_env.config), "-O", "check", "cm"], capture_output=True)
    assert check.returncode == 0, check.stderr
    subprocess.run(["ssh", "-F", str(ssh_env.config), "-O", "exit", "cm"], capture_output=True)


async def test_trio_client_calls_subscribes_and_cancels_through_ssh(ssh_env: Sshd, sock_path: str) -> None:
    entered, cancelled = trio.Event(), trio.Event()
    methods = basic_methods()

    @methods.add
    async def hang() -> None:
        entered.set()
        try:
            await trio.sleep_forever()
        finally:
            cancelled.set()

    async with (
        serving(sock_path, methods),
        open_client(f"ssh://h2{sock_path}", connect_timeout=TIMEOUT) as client,
    ):
        with trio.fail_after(TIMEOUT):
            assert await client.call("ping") == "pong"
            async with client.subscribe("stats", interval=0.05) as sub:
                async for data in sub:
                    assert "server" in data
                    break
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.call, "hang")
                await entered.wait()
                nursery.cancel_scope.cancel()
            await cancelled.wait()  # rpc.cancel went through ssh and the relay
            assert await client.call("echo", "still fine") == "still fine"


async def test_trio_client_quotes_ssh_when_it_fails(ssh_env: Sshd, sock_dir: str) -> None:
    async with open_client(f"ssh://h1{sock_dir}/missing.sock") as client:
        with trio.fail_after(TIMEOUT), pytest.raises(ConnectError, match=r"missing\.sock: No such file"):
            await client.call("ping")


def whoami_methods() -> Methods:
    methods = basic_methods()

    @methods.add(access=Access.READ)
    def whoami() -> int:
        peer = current_context().peer
        assert peer is not None
        return peer.uid

    @methods.add(access=Access.ADMIN)
    def restart() -> str:
        return "restarting"

    return methods


def test_the_server_sees_the_login_user(ssh_env: Sshd, open_dir: str) -> None:
    path = os.path.join(open_dir, "s.sock")
    remote_uid = pwd.getpwnam(REMOTE_USER).pw_uid
    with served(path, whoami_methods(), policy=Policy(default=Access.READ), socket_mode=0o666):
        with Client(f"ssh://{REMOTE_USER}@h1{path}", timeout=TIMEOUT) as client:
            assert client.call("whoami") == remote_uid
            with pytest.raises(RpcError) as denied:
                client.call("restart")
            assert denied.value.code == -32003
        with Client(f"ssh://root@h1{path}", timeout=TIMEOUT) as client:
            assert client.call("whoami") == 0
            assert client.call("restart") == "restarting"


def run_cli(env: dict[str, str], *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "jrpc_unix", *argv],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=TIMEOUT * 3,
    )


@pytest.mark.parametrize(
    ("address", "extra", "said"),
    [
        ("ssh://nobody@h1{path}", "", "ssh failed: nobody@127.0.0.1: Permission denied (publickey)"),
        (
            "ssh://h1:{closed}{path}",
            "",
            "ssh failed: ssh: connect to host 127.0.0.1 port {closed}: Connection refused",
        ),
        ("ssh://h1{dir}/missing.sock", "", "bridge: cannot connect to {dir}/missing.sock: No such file"),
        ("ssh://h1{path}", "-o UserKnownHostsFile=/dev/null", "Host key verification failed."),
    ],
    ids=["wrong user key", "closed port", "remote socket missing", "unknown host key"],
)
def test_ssh_failures_exit_3_with_ssh_message(
    ssh_env: Sshd, shared_demo: DemoProcess, address: str, extra: str, said: str
) -> None:
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        fill = {
            "path": shared_demo.path,
            "dir": os.path.dirname(shared_demo.path),
            "closed": closed.getsockname()[1],
        }
        env = {**ssh_env.env, "JRPC_UNIX_SSH": f"ssh -F {ssh_env.config} {extra}"}
        done = run_cli(env, "call", address.format(**fill), "ping")
    assert done.returncode == 3, done.stderr
    assert said.format(**fill) in done.stderr.decode(), done.stderr
    assert done.stdout == b""


def test_the_bridge_as_a_forced_command(ssh_env: Sshd, shared_demo: DemoProcess, sock_dir: str) -> None:
    """A key whose authorized_keys line forces ``jrpc-unix bridge PATH``: whatever socket the
    client names, that key reaches only PATH."""
    key = os.path.join(sock_dir, "forced")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    with open(key + ".pub") as pub:
        public = pub.read().strip()
    forced = f"{sys.executable} -m jrpc_unix bridge {shared_demo.path}"
    ssh_env.authorize("root", f'command="{forced}",restrict {public}')
    env = {**ssh_env.env, "JRPC_UNIX_SSH": f"ssh -F {ssh_env.config} -o IdentityFile={key}"}
    done = run_cli(env, "call", "ssh://h1/some/other.sock", "echo", "forced")
    assert (done.returncode, done.stdout) == (0, b'"forced"\n'), done.stderr
    # restrict: that key cannot forward (ssh -W to sshd's own port), though the other key can
    for identity, forwards in ((str(ssh_env.user_key), True), (key, False)):
        argv = ["ssh", "-F", str(ssh_env.config), "-i", identity, "-W", f"127.0.0.1:{ssh_env.port}", "h1"]
        probe = subprocess.run(argv, capture_output=True, timeout=TIMEOUT)
        assert probe.stdout.startswith(b"SSH-2.0-") is forwards, probe


def test_watch_through_ssh(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    done = run_cli(
        ssh_env.env, "watch", f"ssh://h3{shared_demo.path}", "stats", "interval=0.05", "--count", "2"
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 2


def test_verbose_says_which_remote_side(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    done = run_cli(ssh_env.env, "call", "-v", f"ssh://hb{shared_demo.path}", "ping")
    assert done.returncode == 0, done.stderr
    assert "remote side: jrpc-unix bridge" in done.stderr.decode()


# -- the bridge itself -----------------------------------------------------------------------


def test_bridge_relays_and_half_closes(shared_demo: DemoProcess) -> None:
    lines = (
        b'{"jsonrpc":"2.0","method":"ping","id":1}\n{"jsonrpc":"2.0","method":"echo","params":["x"],"id":2}\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "jrpc_unix", "bridge", shared_demo.path],
        input=lines,
        capture_output=True,
        timeout=TIMEOUT,
    )
    answers: list[Any] = [line for line in done.stdout.splitlines()]
    assert done.returncode == EXIT_ENDED, done.stderr
    assert answers == [b'{"jsonrpc":"2.0","result":"pong","id":1}', b'{"jsonrpc":"2.0","result":"x","id":2}']


def test_bridge_says_why_it_cannot_connect(sock_dir: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jrpc_unix", "bridge", f"{sock_dir}/none.sock"],
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == EXIT_CONNECT
    assert (
        done.stderr
        == f"jrpc-unix bridge: cannot connect to {sock_dir}/none.sock: No such file or directory\n".encode()
    )


def test_a_notification_is_delivered_before_the_command_exits(ssh_env: Sshd, demo: DemoProcess) -> None:
    """Closing shuts our side first and lets ssh pass on what was written: nothing is lost."""
    for _ in range(3):
        done = run_cli(ssh_env.env, "notify", f"ssh://h1{demo.path}", "counter.incr")
        assert done.returncode == 0, done.stderr
    with Client(demo.path, timeout=TIMEOUT) as client:
        assert client.call("counter.get") == 3


def test_a_timeout_ends_ssh_and_the_next_call_reconnects(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    with Client(f"ssh://h1{shared_demo.path}", timeout=0.5) as client:
        with pytest.raises(RpcTimeoutError, match=r"timed out after 0\.5 s"):
            client.call("sleep", 30)
        client.timeout = TIMEOUT
        assert client.call("ping") == "pong"


async def test_async_fleet_through_ssh_with_a_timeout(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    fleet = AsyncFleet([f"ssh://h{n}{shared_demo.path}" for n in (1, 2)], timeout=TIMEOUT)
    assert [o.result for o in await fleet.call("echo", "x")] == ["x", "x"]
    slow = await AsyncFleet([f"ssh://h3{shared_demo.path}"], timeout=1).call("sleep", 30)
    assert isinstance(slow[0].error, RpcTimeoutError)


def test_ssh_w_is_chosen_from_openssh_9_4(sock_dir: str) -> None:
    """The version probe and the command line of each remote side (``ssh -W`` itself needs a
    local OpenSSH >= 9.4, which this machine may not have: an older one hangs on ``-W /path``)."""
    from jrpc_unix._client.ssh import ssh_command, stdio_forwarding

    for version, stdio in (("OpenSSH_9.4p1", True), ("OpenSSH_10.0p2", True), ("OpenSSH_9.2p1", False)):
        fake = os.path.join(sock_dir, f"ssh-{version}")
        with open(fake, "w") as script:
            script.write(f"#!/bin/sh\necho '{version} Debian, OpenSSL 3.0' >&2\n")
        os.chmod(fake, 0o755)
        assert stdio_forwarding([fake]) is stdio
    target = parse_ssh("ssh://ops@web01:2222/run/app.sock")
    assert ssh_command(target, 2.5, True, ["ssh"]) == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=3", "-p", "2222", "-l", "ops",
        "-W", "/run/app.sock", "--", "web01",
    ]  # fmt: skip
    command = ssh_command(target, None, False, ["ssh", "-F", "cfg"])
    assert command[:9] == ["ssh", "-F", "cfg", "-o", "BatchMode=yes", "-p", "2222", "-l", "ops"]
    assert command[9:12] == ["-T", "--", "web01"]
    assert "exec jrpc-unix bridge /run/app.sock" in command[12]
    assert stdio_forwarding([os.path.join(sock_dir, "no-such-ssh")]) is False


def test_a_silent_host_is_a_timeout_not_a_hang(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    """A port that accepts TCP but never speaks ssh: ``--timeout`` bounds it (ssh's
    ConnectTimeout or the client's own deadline, whichever says so first), exit 3."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # the kernel completes the handshake; nobody ever answers
        port = silent.getsockname()[1]
        done = run_cli(ssh_env.env, "call", "--timeout", "1", f"ssh://h1:{port}{shared_demo.path}", "ping")
    assert done.returncode == 3, done.stderr
    assert b"timed out" in done.stderr


def test_a_framing_over_ssh(ssh_env: Sshd, shared_demo: DemoProcess) -> None:
    """``framing=`` composes over the ssh stream (the server detects the framing)."""
    with Client(f"ssh://h2{shared_demo.path}", timeout=TIMEOUT, framing="json-seq") as client:
        assert client.call("echo", "framed") == "framed"
