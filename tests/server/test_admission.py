"""Who gets a connection, and what a refusal costs (specs/protocol.md §7, §8; specs/security.md).

Other users fill the connections as real processes (``setpriv``); servers run in-process where
only their answers matter, and as processes where their descriptors and tasks are counted
(/proc/<pid>/fd, and a method that walks the trio task tree).
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TIMEOUT, DemoProcess, LineClient, ServerProcess, wait_for
from helpers.ops import (
    AS_NOBODY,
    PING,
    PONG,
    basic_methods,
    fd_count,
    open_for_others,
    python_for_others,
    read_until_eof_or_error,
    served,
)

from jrpc_unix import Limits, Policy

AS_GHOST = ["setpriv", "--reuid=4242", "--regid=4242", "--clear-groups"]

needs_other_users = pytest.mark.skipif(
    os.geteuid() != 0 or python_for_others() is None,
    reason="needs root (to run clients as other users) and a Python they can run",
)

#: Run as another user: open up to ``count`` connections one after the other, ping on each;
#: report the answers as one JSON line, then hold the admitted connections until stdin closes.
HOLDER_SCRIPT = textwrap.dedent(
    """
    import json, socket, sys
    path, count = sys.argv[1], int(sys.argv[2])
    held, answers = [], []
    for _ in range(count):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(path)
        s.sendall(b'{"jsonrpc":"2.0","method":"ping","id":"ping"}\\n')
        answer = json.loads(s.makefile("rb").readline())
        answers.append(answer)
        (held if "result" in answer else []).append(s)
    print(json.dumps(answers), flush=True)
    sys.stdin.read()
    """
)


@contextlib.contextmanager
def holding(user: list[str], path: str, count: int) -> Iterator[list[dict[str, Any]]]:
    """``count`` connections tried as ``user`` (a setpriv prefix); their answers, while held."""
    exe = python_for_others()
    assert exe is not None
    proc = subprocess.Popen(
        [*user, exe, "-I", "-S", "-c", HOLDER_SCRIPT, path, str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd="/",
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, "the holder did not report"
        yield json.loads(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(TIMEOUT)
        proc.stdout.close()


def pongs(answers: list[dict[str, Any]]) -> int:
    return sum(a == PONG for a in answers)


def overloaded(data: str) -> dict[str, Any]:
    error = {"code": -32006, "message": "Server overloaded", "data": data}
    return {"jsonrpc": "2.0", "id": None, "error": error}


# -- the owner and root can always get in ---------------------------------------------------------


@needs_other_users
def test_other_users_cannot_lock_out_root(sock_dir: str) -> None:
    """Two other users take every connection they may; root (the server's user) still gets in."""
    open_for_others(sock_dir)
    path = os.path.join(sock_dir, "s.sock")
    limits = Limits(max_connections=4, max_connections_per_uid=None)  # the default reserve: 32
    with (
        served(path, basic_methods(), limits=limits, socket_mode=0o666) as handle,
        holding(AS_NOBODY, path, 3) as first,
        holding(AS_GHOST, path, 3) as second,
    ):
        assert pongs(first) + pongs(second) == 4
        assert second[1:] == [overloaded("too many connections (limit 4)")] * 2
        mine = [LineClient(path) for _ in range(5)]
        try:
            for c in mine:
                c.send(PING)
                assert c.read_json() == PONG
        finally:
            for c in mine:
                c.close()
        stats = handle.server.stats.snapshot()["server"]["connections"]
        assert (stats["limit"], stats["reserved"], stats["rejected"]) == (4, 32, {"max_connections": 2})


@needs_other_users
def test_the_reserve_is_bounded_too_and_counted_in_stats(sock_dir: str) -> None:
    open_for_others(sock_dir)
    path = os.path.join(sock_dir, "s.sock")
    limits = Limits(max_connections=2, reserved_connections=2, max_connections_per_uid=None)
    with (
        served(path, basic_methods(), limits=limits, socket_mode=0o666),
        holding(AS_NOBODY, path, 3) as others,
    ):
        assert others[2] == overloaded("too many connections (limit 2)")
        mine = [LineClient(path) for _ in range(2)]
        try:
            for c in mine:
                c.send(PING)
                assert c.read_json() == PONG
            with LineClient(path) as extra:
                why = (
                    "too many connections (limit 2, "
                    "and all 2 reserved for the server's user and root are taken)"
                )
                assert extra.read_json() == overloaded(why)
            stats = mine[0].call("rpc.stats")["result"]["server"]["connections"]
        finally:
            for c in mine:
                c.close()
        assert stats["open"] == 4
        assert stats["rejected"] == {"max_connections": 1, "reserved_connections": 1}


# -- a refusal costs no task and no wait ----------------------------------------------------------

#: A server process with the methods these tests need: ``tasks`` counts the trio tasks alive;
#: ``hog`` opens descriptors until none is left (an application leaking them), ``unhog`` closes them.
SERVER_SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    import trio
    from jrpc_unix import Limits, Methods, Policy, run
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    methods, hogged = Methods(), []

    @methods.add
    def ping():
        return "pong"

    @methods.add
    def tasks():
        def count(task):
            return 1 + sum(count(t) for n in task.child_nurseries for t in n.child_tasks)
        return count(trio.lowlevel.current_root_task())

    @methods.add
    def hog():
        try:
            while True:
                hogged.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            return len(hogged)

    @methods.add
    def unhog():
        while hogged:
            os.close(hogged.pop())

    path, limits, options = sys.argv[1], json.loads(sys.argv[2]), {}
    if len(sys.argv) > 3:
        options = {"policy": Policy(allow_users=["root"]), "socket_mode": 0o666}
    run(path, methods, limits=Limits(**limits), **options)
    """
)


def script_server(path: str, log: str, limits: dict[str, Any], *more: str, **options: Any) -> ServerProcess:
    """Up once it logged that it listens: no probe connection, which could count against a limit."""
    argv = [sys.executable, "-c", SERVER_SCRIPT, path, json.dumps(limits), *more]
    return ServerProcess(argv, log, lambda: f"listening on {path}" in Path(log).read_text(), **options)


def test_a_flood_of_refused_clients_holds_no_task_and_few_descriptors(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    with (
        script_server(path, os.path.join(sock_dir, "log"), {"max_connections_per_uid": 1}) as server,
        LineClient(path) as held,
    ):
        tasks = held.call("tasks")["result"]
        fds = fd_count(server.pid)
        flood = [LineClient(path) for _ in range(100)]  # all still open on our side
        try:
            for c in flood:
                assert c.read_json() == overloaded(f"too many connections from uid {os.getuid()} (limit 1)")
                assert c.read_to_eof() == b""  # and nothing more: the server is done with it
            assert held.call("tasks")["result"] == tasks
            assert fd_count(server.pid) <= fds + 32  # the refused sockets that linger a moment
            wait_for(lambda: fd_count(server.pid) == fds, "the lingering sockets to be closed")
        finally:
            for c in flood:
                c.close()
        stats = held.call("rpc.stats")["result"]["server"]["connections"]
        assert stats["rejected"] == {"max_connections_per_uid": 100}


def _socat(path: str, data: bytes, *user: str) -> str:
    socat = shutil.which("socat")
    assert socat is not None
    done = subprocess.run(
        [*user, socat, "-", f"UNIX-CONNECT:{path}"], input=data, capture_output=True, timeout=TIMEOUT, cwd="/"
    )
    return done.stdout.decode()


def _cli(path: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "jrpc_unix", "call", path, "ping"],
        capture_output=True,
        timeout=TIMEOUT,
        text=True,
    )
    assert done.returncode == 1, done
    return done.stderr


def _write_first(path: str, data: bytes) -> str:
    with LineClient(path) as c:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            c.send(data)
        return read_until_eof_or_error(c).decode()


@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
@pytest.mark.parametrize(
    "client",
    ["socat", "socat, 400 kB first", "jrpc-unix call", "Client", "raw, 100 kB first"],
)
def test_refused_clients_still_read_why(sock_path: str, client: str) -> None:
    """Refused in microseconds, yet clients that write before they read still see the reason."""
    from jrpc_unix import Client, RpcError

    why = f"too many connections from uid {os.getuid()} (limit 1)"
    limits = Limits(max_connections_per_uid=1)
    with served(sock_path, basic_methods(), limits=limits), LineClient(sock_path) as held:
        held.send(PING)
        assert held.read_json() == PONG
        for _ in range(10):
            if client == "Client":
                with pytest.raises(RpcError) as info, Client(sock_path) as c:
                    c.call("ping")
                seen = str(info.value.data)
            elif client == "jrpc-unix call":
                seen = _cli(sock_path)
            elif client.startswith("raw"):
                seen = _write_first(sock_path, PING * 2500)
            else:
                seen = _socat(sock_path, PING * (10_000 if "400 kB" in client else 1))
            assert why in seen, seen


@needs_other_users
@pytest.mark.skipif(shutil.which("socat") is None, reason="socat is not installed")
def test_a_user_the_policy_refuses_reads_why_through_socat(sock_dir: str) -> None:
    open_for_others(sock_dir)
    path = os.path.join(sock_dir, "s.sock")
    with served(path, basic_methods(), policy=Policy(allow_users=["root"]), socket_mode=0o666) as handle:
        for _ in range(10):
            answer = json.loads(_socat(path, PING, *AS_NOBODY))
            assert answer["error"]["code"] == -32003
            assert answer["error"]["data"] == "uid 65534 gid 65534 may not use this socket"
        assert handle.server.stats.rejected_connections["access_denied"] == 10


# -- descriptors: connections never exhaust them; the application might ----------------------------


def _low_fd_limit(limit: int) -> Any:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def test_connection_limits_fit_in_a_low_fd_limit(sock_dir: str) -> None:
    """RLIMIT_NOFILE 64: the limits shrink to fit, so 100 connections never make accept fail."""
    path, log = os.path.join(sock_dir, "s.sock"), os.path.join(sock_dir, "log")
    with script_server(path, log, {}, preexec_fn=_low_fd_limit(64)) as server:
        socks = [LineClient(path) for _ in range(100)]
        try:
            for c in socks:
                c.send(PING)
            answers = [c.read_json() for c in socks]
            assert fd_count(server.pid) < 64
            stats = socks[0].call("rpc.stats")["result"]["server"]["connections"]
        finally:
            for c in socks:
                c.close()
        assert answers.count(PONG) == stats["limit"] + stats["reserved"]  # root: shared, then reserved
        assert all(a["error"]["code"] == -32006 for a in answers if a != PONG)
        assert "limits lowered" in server.log()
        assert "EMFILE" not in server.log()


def test_an_application_out_of_descriptors_still_tells_peers_why(sock_dir: str) -> None:
    """The application took every descriptor: newcomers are told so, not left hanging."""
    path, log = os.path.join(sock_dir, "s.sock"), os.path.join(sock_dir, "log")
    with script_server(path, log, {}, preexec_fn=_low_fd_limit(64)), LineClient(path) as held:
        assert held.call("hog")["result"] > 0
        for _ in range(3):
            with LineClient(path) as c:
                assert c.read_json() == overloaded("the server is out of file descriptors")
                assert read_until_eof_or_error(c) == b""
        held.call("unhog")
        with LineClient(path) as c:
            c.send(PING)
            assert c.read_json() == PONG
        rejected = held.call("rpc.stats")["result"]["server"]["connections"]["rejected"]
        assert rejected == {"out_of_fds": 3}


# -- defaults for a real host ---------------------------------------------------------------------


def test_300_concurrent_clients_of_one_user_with_the_defaults(sock_dir: str) -> None:
    """The demo as it ships: 300 clients connect at once (non-blocking, as trio's do), all answered."""
    path = os.path.join(sock_dir, "demo.sock")
    with DemoProcess(path, os.path.join(sock_dir, "log")):
        socks = []
        try:
            for _ in range(300):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                socks.append(s)
                s.setblocking(False)
                try:
                    s.connect(path)
                except BlockingIOError:
                    pytest.fail(f"EAGAIN on connect after {len(socks) - 1} connections (backlog full)")
            for s in socks:
                s.send(PING)
            waiting = {s: b"" for s in socks}
            answered = 0
            while waiting:
                readable, _, _ = select.select(list(waiting), [], [], TIMEOUT)
                assert readable, f"{len(waiting)} clients got no answer"
                for s in readable:
                    waiting[s] += s.recv(4096)
                    if waiting[s].endswith(b"\n") or not waiting[s]:
                        answered += json.loads(waiting.pop(s)) == PONG
            assert answered == 300
        finally:
            for s in socks:
                s.close()


def test_run_raises_the_soft_fd_limit_only_as_far_as_the_defaults_need(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "demo.sock")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 5000:
        pytest.skip(f"the hard RLIMIT_NOFILE ({hard}) is below what the defaults need")

    def soft_1024() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    with DemoProcess(path, os.path.join(sock_dir, "log"), preexec_fn=soft_1024) as demo:
        need = 4096 + 32 + 64 + 32 + 1  # connections, reserved, headroom, lingering refusals, spare
        soft = _fd_limits(demo.pid)[0]
        assert need < soft < need + 64, soft  # + the descriptors open at start, no more
        with LineClient(path) as c:
            stats = c.call("stats")["result"]["server"]["connections"]
        assert (stats["limit"], stats["reserved"]) == (4096, 32)


def _fd_limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no 'Max open files' line")
