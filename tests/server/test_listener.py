"""The socket file's life (specs/protocol.md §1, §8, §9), over real sockets and processes.

Permissions from the first instant, stale files replaced, live ones never stolen, foreign paths
never touched, racing starters serialised, removal only of our own inode, long paths, abstract
addresses and systemd socket activation.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import stat
import struct
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from helpers import DEMO, ROOT, TIMEOUT, DemoProcess, LineClient, ServerProcess, wait_for
from helpers.ops import (
    PING,
    PONG,
    StatPoller,
    basic_methods,
    busy_thread,
    connectable,
    ping,
    served,
    stale_socket,
    umask,
)

from jrpc_unix import AddressInUseError, Policy, ServerSetupError, run, serve_in_thread
from jrpc_unix._address import MAX_PATH_BYTES, socket_name
from jrpc_unix._server.listener import open_unix_listener
from jrpc_unix._server.server import run_or_raise

NOGROUP = 65534


def mode_of(path: str) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def peer_pid(path: str) -> int:
    """The pid of the process listening on ``path`` (SO_PEERCRED seen from the client side)."""
    with socket_name(path) as name:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(TIMEOUT)
            s.connect(name)
            pid, _, _ = struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
        finally:
            s.close()
    return int(pid)


def fill_accept_queue(path: str, queued: list[socket.socket], at_most: int) -> None:
    """Connect without blocking until the accept queue is full (EAGAIN) or ``at_most`` wait."""
    while len(queued) < at_most:
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except BlockingIOError:
            c.close()
            return
        queued.append(c)


# -- mode and group ---------------------------------------------------------------------------------


def test_default_mode_is_0600_owned_by_the_server_user(sock_path: str) -> None:
    with served(sock_path, basic_methods()):
        st = os.lstat(sock_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert st.st_uid == os.getuid()
        assert ping(sock_path)


@pytest.mark.parametrize(
    ("mode", "group"),
    [(0o600, None), (0o660, NOGROUP), (0o660, "nogroup"), (0o666, None), (0o640, NOGROUP), (0o700, None)],
)
def test_mode_and_group_options(sock_path: str, mode: int, group: Any) -> None:
    # The umask must not matter either way.
    with umask(0o077), served(sock_path, basic_methods(), socket_mode=mode, socket_group=group):
        st = os.lstat(sock_path)
        assert stat.S_IMODE(st.st_mode) == mode
        assert st.st_gid == (os.getgid() if group is None else NOGROUP)
        assert ping(sock_path)


def test_unknown_group_is_a_clear_error(sock_path: str) -> None:
    with pytest.raises(ValueError, match="no such group: 'no-such-group-xyz'"):
        serve_in_thread(sock_path, basic_methods(), socket_group="no-such-group-xyz")
    assert not os.path.lexists(sock_path)


# -- never a window --------------------------------------------------------------------------------


def _check_poll_report(
    report: dict[str, Any], server_ino: int, mode: int, gid: int, stale_ino: int | None
) -> None:
    seen = report["seen"]
    assert report["vanished"] == 0, f"the path disappeared while a server owned it: {report}"
    assert report["polls"] > 100, report
    inodes = {ino for ino, *_ in seen}
    assert server_ino in inodes, report
    assert inodes <= {server_ino, stale_ino}, f"a file that is neither the stale one nor ours: {report}"
    for ino, m, g, is_sock, _count in seen:
        assert is_sock, report
        if ino == server_ino:
            # Never looser than requested (never looser at all, in fact: exactly the final mode).
            assert m & ~mode == 0, f"mode {oct(m)} looser than {oct(mode)}: {report}"
            assert (m, g) == (mode, gid), f"seen {oct(m)} gid {g}, wanted {oct(mode)} gid {gid}"


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "replacing-stale"])
@pytest.mark.parametrize(("mode", "group"), [(0o600, None), (0o660, NOGROUP), (0o620, None)])
def test_no_window_with_looser_permissions(sock_dir: str, mode: int, group: int | None, stale: bool) -> None:
    """A separate process stats the path as fast as it can while servers start with umask 0.

    The file must appear with its final mode and group, never looser, and never disappear once
    it exists (a stale file is replaced atomically, not deleted then re-created).
    """
    path = os.path.join(sock_dir, "s.sock")
    gid = os.getgid() if group is None else group
    for _ in range(3):
        with umask(0):
            stale_ino = stale_socket(path) if stale else None
            poller = StatPoller(path, sock_dir)
            try:
                with served(path, basic_methods(), socket_mode=mode, socket_group=group):
                    ino = os.lstat(path).st_ino
                    poller.wait_inode(ino)
                    assert ping(path)
                    report = poller.finish()
            finally:
                poller.kill()
        _check_poll_report(report, ino, mode, gid, stale_ino)
        assert not os.path.lexists(path)


def test_no_window_demo_process_with_umask_0(sock_dir: str) -> None:
    """The same with a real server process whose umask is 0: the file is 0600 from the start."""
    path = os.path.join(sock_dir, "demo.sock")
    poller = StatPoller(path, sock_dir)
    try:
        with DemoProcess(path, os.path.join(sock_dir, "log"), preexec_fn=lambda: os.umask(0)) as demo:
            ino = os.lstat(path).st_ino
            poller.wait_inode(ino)
            assert ping(path)
            report = poller.finish()
            assert demo.signal(signal.SIGTERM) == 0
    finally:
        poller.kill()
    _check_poll_report(report, ino, 0o600, os.getgid(), None)
    assert not os.path.lexists(path)


# -- stale files and live servers -------------------------------------------------------------------


def test_stale_socket_file_is_replaced(sock_path: str) -> None:
    stale_ino = stale_socket(sock_path)
    assert not connectable(sock_path)
    with served(sock_path, basic_methods()):
        assert os.lstat(sock_path).st_ino != stale_ino
        assert mode_of(sock_path) == 0o600
        assert ping(sock_path)
    assert not os.path.lexists(sock_path)


def test_killed_server_leaves_a_stale_file_the_next_one_replaces(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "demo.sock")
    first = DemoProcess(path, os.path.join(sock_dir, "log1"))
    try:
        assert ping(path)
        first.proc.kill()  # SIGKILL: no cleanup, the file stays behind
        first.proc.wait(timeout=TIMEOUT)
    finally:
        first.close()
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert not connectable(path)
    with DemoProcess(path, os.path.join(sock_dir, "log2")) as second:
        assert ping(path)
        assert peer_pid(path) == second.pid
        assert second.signal(signal.SIGTERM) == 0
    assert not os.path.lexists(path)


def test_live_server_is_never_stolen_by_a_second_process(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "demo.sock")
    with DemoProcess(path, os.path.join(sock_dir, "log1")) as first:
        ino = os.lstat(path).st_ino
        with LineClient(path) as held:  # a client connected to the first server throughout
            held.send(PING)
            assert held.read_json() == PONG
            second = subprocess.run(
                [sys.executable, str(DEMO), path], capture_output=True, timeout=TIMEOUT, cwd=str(ROOT)
            )
            # A clear message, one line, and a non-zero exit (no traceback).
            assert second.returncode == 1
            assert second.stderr.decode().strip().splitlines()[-1] == (
                f"jrpc-unix: cannot serve on {path}: another server is already listening on {path}"
            )
            assert "Traceback" not in second.stderr.decode()
            # The first server is untouched: same file, same process, the held connection works.
            assert os.lstat(path).st_ino == ino
            assert peer_pid(path) == first.pid
            held.send(PING)
            assert held.read_json() == PONG
            assert ping(path)
        assert first.signal(signal.SIGTERM) == 0


def test_live_server_is_never_stolen_cli_says_so_in_one_line(sock_dir: str) -> None:
    """``jrpc-unix serve`` on a live path: one clear line on stderr, exit status 3, no traceback."""
    pytest.importorskip("jrpc_unix._cli.serve")
    path = os.path.join(sock_dir, "demo.sock")
    with DemoProcess(path, os.path.join(sock_dir, "log1")) as first:
        second = subprocess.run(
            [sys.executable, "-m", "jrpc_unix", "serve", f"{DEMO}:methods", path],
            capture_output=True,
            timeout=TIMEOUT,
            cwd=str(ROOT),
        )
        err = second.stderr.decode()
        assert second.returncode == 3, err
        assert f"another server is already listening on {path}" in err
        assert "Traceback" not in err
        assert peer_pid(path) == first.pid
        assert ping(path)


def test_live_server_is_never_stolen_in_process(sock_path: str) -> None:
    with served(sock_path, basic_methods()):
        ino = os.lstat(sock_path).st_ino
        with pytest.raises(AddressInUseError, match=f"another server is already listening on {sock_path}"):
            serve_in_thread(sock_path, basic_methods())
        assert os.lstat(sock_path).st_ino == ino
        assert ping(sock_path)


def test_run_raises_address_in_use_itself(sock_path: str, capsys: pytest.CaptureFixture[str]) -> None:
    with served(sock_path, basic_methods()), pytest.raises(AddressInUseError):
        run_or_raise(sock_path, basic_methods())  # fails at setup, before waiting for any signal
    with served(sock_path, basic_methods()), pytest.raises(SystemExit, match=r"^1$"):
        run(sock_path, basic_methods())  # run(): one line, exit 1
    assert capsys.readouterr().err == (
        f"jrpc-unix: cannot serve on {sock_path}: another server is already listening on {sock_path}\n"
    )


def test_live_server_with_a_full_backlog_is_not_stolen_and_start_does_not_hang(sock_path: str) -> None:
    """A live but busy server (its accept queue full) is still live: fail clearly, do not block."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(0)
    queued: list[socket.socket] = []
    try:
        fill_accept_queue(sock_path, queued, 1000)
        assert len(queued) < 1000
        ino = os.lstat(sock_path).st_ino
        outcome: list[BaseException | None] = []

        def start() -> None:
            try:
                serve_in_thread(sock_path, basic_methods()).stop(timeout=TIMEOUT)
                outcome.append(None)
            except BaseException as exc:
                outcome.append(exc)

        starter = threading.Thread(target=start, daemon=True)
        starter.start()
        starter.join(TIMEOUT)
        assert not starter.is_alive(), "the second server hangs probing a busy live socket"
        assert len(outcome) == 1
        assert isinstance(outcome[0], AddressInUseError), outcome
        assert os.lstat(sock_path).st_ino == ino
    finally:
        for c in queued:
            c.close()
        listener.close()


@pytest.mark.parametrize(
    "kind", ["file", "directory", "symlink-to-file", "dangling-symlink", "fifo", "symlink-to-stale-socket"]
)
def test_a_path_that_is_not_a_socket_is_never_touched(sock_dir: str, kind: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    target = os.path.join(sock_dir, "target")
    if kind == "file":
        Path(path).write_bytes(b"precious data\n")
    elif kind == "directory":
        os.mkdir(path)
        Path(path, "inside").write_text("x")
    elif kind == "symlink-to-file":
        Path(target).write_text("x")
        os.symlink(target, path)
    elif kind == "dangling-symlink":
        os.symlink(os.path.join(sock_dir, "nowhere"), path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        stale_socket(target)
        os.symlink(target, path)
    before = os.lstat(path)
    with pytest.raises(ServerSetupError, match="exists and is not a socket; refusing to replace it"):
        serve_in_thread(path, basic_methods())
    after = os.lstat(path)

    def identity(st: os.stat_result) -> tuple[int, int, int]:
        return st.st_ino, st.st_mode, st.st_mtime_ns

    assert identity(after) == identity(before)
    if kind == "file":
        assert Path(path).read_bytes() == b"precious data\n"
    # No temporary socket left behind in the directory either.
    assert not [n for n in os.listdir(sock_dir) if n.endswith(".sock") and n != "s.sock"]


def test_a_path_that_is_not_a_socket_demo_exits_non_zero(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    Path(path).write_bytes(b"keep me")
    done = subprocess.run(
        [sys.executable, str(DEMO), path], capture_output=True, timeout=TIMEOUT, cwd=str(ROOT)
    )
    assert done.returncode != 0
    assert "exists and is not a socket" in done.stderr.decode()
    assert Path(path).read_bytes() == b"keep me"


def test_missing_directory_is_a_clear_error(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "no", "such", "s.sock")
    with pytest.raises(ServerSetupError, match="cannot use directory"):
        serve_in_thread(path, basic_methods())


# -- racing starters ---------------------------------------------------------------------------------


@pytest.mark.parametrize("stale", [False, True], ids=["fresh", "stale"])
def test_racing_server_threads_exactly_one_wins(sock_dir: str, stale: bool) -> None:
    path = os.path.join(sock_dir, "s.sock")
    for _ in range(5):
        if stale:
            stale_socket(path)
        barrier = threading.Barrier(8)
        results: list[Any] = []
        lock = threading.Lock()

        def start(barrier: threading.Barrier, lock: threading.Lock, results: list[Any]) -> None:
            barrier.wait(TIMEOUT)
            try:
                handle: Any = serve_in_thread(path, basic_methods())
            except BaseException as exc:
                handle = exc
            with lock:
                results.append(handle)

        threads = [
            threading.Thread(target=start, args=(barrier, lock, results), daemon=True) for _ in range(8)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        try:
            assert len(results) == 8
            assert len(winners) == 1, results
            assert all(isinstance(e, AddressInUseError) for e in losers), losers
            assert ping(path)
        finally:
            for w in winners:
                w.stop(timeout=TIMEOUT)
        assert not os.path.lexists(path)
        assert os.listdir(sock_dir) == [], "a temporary socket file was left behind"


def test_racing_server_processes_exactly_one_wins(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    stale_socket(path)
    procs = [
        subprocess.Popen(
            [sys.executable, str(DEMO), path],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=str(ROOT),
        )
        for _ in range(5)
    ]
    try:
        # Losers exit by themselves; exactly one stays and serves.
        wait_for(lambda: sum(p.poll() is not None for p in procs) >= 4, "four of five servers to give up")
        alive = [p for p in procs if p.poll() is None]
        assert len(alive) == 1
        wait_for(lambda: connectable(path), "the winner to listen")
        assert peer_pid(path) == alive[0].pid
        assert ping(path)
        for p in procs:
            if p is not alive[0]:
                assert p.returncode != 0
                assert p.stderr is not None
                assert f"another server is already listening on {path}" in p.stderr.read().decode()
        alive[0].send_signal(signal.SIGTERM)
        assert alive[0].wait(timeout=TIMEOUT) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=TIMEOUT)
            if p.stderr is not None:
                p.stderr.close()
    assert os.listdir(sock_dir) == []


# -- the listen backlog -----------------------------------------------------------------------------


async def test_listen_backlog_is_as_large_as_the_kernel_allows(sock_path: str) -> None:
    """trio's default (the kernel caps it at net.core.somaxconn), not 128: a burst of clients
    waits in the accept queue instead of failing with EAGAIN. Nobody accepts here; non-blocking
    connects fill the queue until the kernel refuses."""
    limit = min(int(await trio.Path("/proc/sys/net/core/somaxconn").read_text()), 0xFFFF)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < limit + 100:
        pytest.skip(f"needs {limit + 100} descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, limit + 100), hard))
    listener, sockfile = await open_unix_listener(sock_path)
    queued: list[socket.socket] = []
    try:
        fill_accept_queue(sock_path, queued, limit + 2)
    finally:
        for c in queued:
            c.close()
        sockfile.remove()
        await listener.aclose()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len(queued) in (limit, limit + 1), f"{len(queued)} connections queued; somaxconn is {limit}"


# -- removal on stop ---------------------------------------------------------------------------------


def test_stop_removes_our_socket_file(sock_path: str) -> None:
    directory = os.path.dirname(sock_path)
    with served(sock_path, basic_methods()):
        assert os.listdir(directory) == ["s.sock"]  # only the final name: no temporary, no lock left
    assert os.listdir(directory) == []


def test_stop_keeps_a_newer_servers_socket(sock_path: str) -> None:
    """A's file was removed by hand and B started on the path: stopping A must not delete B's."""
    first = serve_in_thread(sock_path, basic_methods())
    try:
        os.unlink(sock_path)
        with served(sock_path, basic_methods()) as second:
            ino = os.lstat(sock_path).st_ino
            first.stop(timeout=TIMEOUT)
            assert not first.running
            assert os.lstat(sock_path).st_ino == ino
            assert ping(sock_path)
            assert second.running
        assert not os.path.lexists(sock_path)
    finally:
        first.stop(timeout=TIMEOUT)


def test_stop_keeps_a_file_that_replaced_ours(sock_path: str) -> None:
    with served(sock_path, basic_methods()):
        os.unlink(sock_path)
        Path(sock_path).write_text("not yours")
    assert Path(sock_path).read_text() == "not yours"


def test_stop_when_our_file_is_already_gone(sock_path: str) -> None:
    with served(sock_path, basic_methods()):
        os.unlink(sock_path)
    assert not os.path.lexists(sock_path)


def test_stop_removes_the_file_of_a_relative_path_after_a_chdir(sock_dir: str) -> None:
    """Daemons chdir("/") after starting: the relative path given at start still names the file."""
    cwd = os.getcwd()
    os.chdir(sock_dir)
    try:
        handle = serve_in_thread("rel.sock", basic_methods())
        try:
            assert ping(os.path.join(sock_dir, "rel.sock"))
            os.chdir("/")
        finally:
            handle.stop(timeout=TIMEOUT)
    finally:
        os.chdir(cwd)
    assert not os.path.lexists(os.path.join(sock_dir, "rel.sock"))


#: Connect to PATH in a tight loop until STOP exists; count what each attempt found: a live
#: server (connected, or its accept queue full), a stale file (refused), no file.
CONNECT_POLLER = textwrap.dedent(
    """
    import json, os, socket, sys
    path, stop = sys.argv[1:3]
    seen = {"live": 0, "stale": 0, "absent": 0}
    print("ready", flush=True)
    polls = 0
    while polls % 256 or not os.path.exists(stop):
        polls += 1
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
            seen["live"] += 1
        except BlockingIOError:
            seen["live"] += 1
        except ConnectionRefusedError:
            seen["stale"] += 1
        except FileNotFoundError:
            seen["absent"] += 1
        finally:
            s.close()
    print(json.dumps(seen), flush=True)
    """
)


def test_a_stopping_servers_file_is_never_stale(sock_dir: str) -> None:
    """A server removes its file *before* it closes its listener, so its file is never stale
    while it exists: a starting server (which replaces only stale files) cannot replace it while
    it is being removed, and removal needs no lock. Another process connects in a tight loop
    while servers start and stop (a busy thread widens every window): never "refused"."""
    path = os.path.join(sock_dir, "s.sock")
    stop = os.path.join(sock_dir, "stop-poller")
    poller = subprocess.Popen(
        [sys.executable, "-I", "-c", CONNECT_POLLER, path, stop],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert poller.stdout is not None
    try:
        assert poller.stdout.readline() == b"ready\n"
        with busy_thread():
            for _ in range(20):
                with served(path, basic_methods()):
                    pass  # (no ping: the poller may keep the accept queue full)
        Path(stop).touch()
        out, _ = poller.communicate(timeout=TIMEOUT)
    finally:
        if poller.poll() is None:
            poller.kill()
            poller.wait(timeout=TIMEOUT)
        poller.stdout.close()
    seen = json.loads(out)
    assert seen["stale"] == 0, f"a server's own file was stale while it stopped: {seen}"
    assert seen["live"] > 0, seen
    assert seen["absent"] > 0, seen


# -- long paths --------------------------------------------------------------------------------------


def _long_dir(base: str, total: int, name: str) -> str:
    """A new directory under ``base`` such that ``dir/name`` is exactly ``total`` bytes long."""
    length = total - len(base) - len(name) - 2  # base + "/" + rest + "/" + name
    assert length > 1
    rest = "".join("/" if i % 51 == 50 else "d" for i in range(length))
    if rest.endswith("/"):
        rest = rest[:-2] + "dd"
    path = os.path.join(base, rest)
    os.makedirs(path)
    assert len(os.path.join(path, name)) == total
    return path


@pytest.mark.parametrize("total", [MAX_PATH_BYTES, MAX_PATH_BYTES + 1, 200, 1000])
def test_long_paths_work(sock_dir: str, total: int) -> None:
    path = os.path.join(_long_dir(sock_dir, total, "s.sock"), "s.sock")
    assert len(os.fsencode(path)) == total
    with served(path, basic_methods(), socket_mode=0o660):
        assert mode_of(path) == 0o660
        with socket_name(path) as name, LineClient(name) as c:
            assert c.call("echo", ["long"]) == {"jsonrpc": "2.0", "result": "long", "id": 1}
        with pytest.raises(AddressInUseError):
            serve_in_thread(path, basic_methods())
    assert not os.path.lexists(path)


def test_long_path_stale_file_replaced_and_demo_process_serves(sock_dir: str) -> None:
    path = os.path.join(_long_dir(sock_dir, 180, "demo.sock"), "demo.sock")
    with socket_name(path) as name:
        stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stale.bind(name)
        stale.close()
    stale_ino = os.lstat(path).st_ino
    with DemoProcess(path, os.path.join(sock_dir, "log")) as demo:
        assert os.lstat(path).st_ino != stale_ino
        with socket_name(path) as name:
            assert ping(name)
        assert demo.signal(signal.SIGTERM) == 0
    assert not os.path.lexists(path)


def test_plain_connect_to_a_long_path_fails_but_socket_name_works(sock_dir: str) -> None:
    path = os.path.join(_long_dir(sock_dir, 150, "s.sock"), "s.sock")
    with served(path, basic_methods()):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with pytest.raises(OSError, match="path too long"):
            s.connect(path)
        s.close()
        with socket_name(path) as name:
            assert name.startswith("/proc/self/fd/")
            assert ping(name)


def test_socket_name_too_long_for_any_workaround_is_a_clear_error(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "n" * 100 + ".sock")
    with pytest.raises(ServerSetupError, match="socket file name is too long"):
        serve_in_thread(path, basic_methods())
    assert not os.listdir(sock_dir)
    with pytest.raises(OSError, match="bytes long; the kernel allows at most 107"), socket_name(path):
        pass


# -- abstract addresses ------------------------------------------------------------------------------


def _abstract_name() -> str:
    return f"@jrpc-unix-test-{os.getpid()}-{threading.get_ident()}"


def test_abstract_address_needs_a_policy() -> None:
    message = "abstract address: it has no file permissions, so it needs a policy"
    with pytest.raises(ServerSetupError, match=message):
        serve_in_thread(_abstract_name(), basic_methods())


def test_abstract_address_with_a_policy_serves_and_is_not_stolen(sock_dir: str) -> None:
    address = _abstract_name()
    cwd_before = set(os.listdir("."))
    with served(address, basic_methods(), policy=Policy()):
        with LineClient("\0" + address[1:]) as c:
            assert c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}
        with pytest.raises(AddressInUseError, match=f"another server is already listening on {address}"):
            serve_in_thread(address, basic_methods(), policy=Policy())
        assert set(os.listdir(".")) == cwd_before  # no file anywhere
    # Released on stop: the name can be served again at once.
    with served(address, basic_methods(), policy=Policy()):
        assert ping("\0" + address[1:])


# -- systemd socket activation -----------------------------------------------------------------------

#: Become the process systemd would have started: the listening sockets at fds 3, 4, ...,
#: LISTEN_PID our own pid, then exec the server (same pid).
SD_WRAPPER = """
import os, sys
fds = [int(x) for x in sys.argv[1].split(",")]
import fcntl
high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100) for fd in fds]  # out of the way first
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)  # inheritable
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDS"] = str(len(fds))
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


def _listening(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(16)
    return s


def _sd_demo(
    sock_dir: str, socks: list[socket.socket], names: str, address: str, ready: Any, log: str = "log"
) -> ServerProcess:
    env = {**os.environ, "LISTEN_FDNAMES": names}
    argv = [sys.executable, "-c", SD_WRAPPER, ",".join(str(s.fileno()) for s in socks), str(DEMO), address]
    return ServerProcess(
        argv, os.path.join(sock_dir, log), ready, env=env, pass_fds=tuple(s.fileno() for s in socks)
    )


def test_systemd_socket_activation(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "control.sock")
    listener = _listening(path)
    os.chmod(path, 0o660)
    try:
        # Nobody accepts until the service runs: the first ping waits in the backlog, as with systemd.
        with _sd_demo(
            sock_dir,
            [listener],
            "control",
            "systemd:control",
            ready=lambda: "listening on systemd:control" in Path(sock_dir, "log").read_text(),
        ) as demo:
            assert ping(path)
            with LineClient(path) as c:
                assert c.call("counter.incr") == {"jsonrpc": "2.0", "result": 1, "id": 1}
            assert demo.signal(signal.SIGTERM) == 0
        # systemd owns the file: the service must leave it (and its mode) alone.
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert mode_of(path) == 0o660
        # The socket is still systemd's (ours): connections queue for the next activation.
        assert connectable(path)
    finally:
        listener.close()


def test_systemd_picks_the_named_socket_among_several(sock_dir: str) -> None:
    other_path, control_path = os.path.join(sock_dir, "other.sock"), os.path.join(sock_dir, "control.sock")
    other, control = _listening(other_path), _listening(control_path)
    try:
        with _sd_demo(
            sock_dir,
            [other, control],
            "other:control",
            "systemd:control",
            ready=lambda: "listening on" in Path(sock_dir, "log").read_text(),
        ) as demo:
            assert ping(control_path)
            assert demo.signal(signal.SIGTERM) == 0
        # The other socket was never accepted on: its queued connection is still pending.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.connect(other_path)
        other.setblocking(False)
        conn, _ = other.accept()  # our probe is there, untouched by the service
        conn.close()
        probe.close()
    finally:
        other.close()
        control.close()


@pytest.mark.parametrize(
    ("names", "address", "message"),
    [
        ("control", "systemd:missing", "need exactly one named 'missing'"),
        ("a:b", "systemd", "systemd passed 2 socket(s); need exactly one (pass systemd:NAME to choose)"),
    ],
)
def test_systemd_wrong_socket_is_a_clear_error(sock_dir: str, names: str, address: str, message: str) -> None:
    socks = [_listening(os.path.join(sock_dir, f"{i}.sock")) for i in range(len(names.split(":")))]
    env = {**os.environ, "LISTEN_FDNAMES": names}
    argv = [sys.executable, "-c", SD_WRAPPER, ",".join(str(s.fileno()) for s in socks), str(DEMO), address]
    try:
        done = subprocess.run(
            argv,
            env=env,
            pass_fds=tuple(s.fileno() for s in socks),
            capture_output=True,
            timeout=TIMEOUT,
            cwd=str(ROOT),
        )
    finally:
        for s in socks:
            s.close()
    assert done.returncode != 0
    assert message in done.stderr.decode()


def test_systemd_without_listen_pid_is_refused(sock_dir: str) -> None:
    env = {**os.environ, "LISTEN_FDS": "1", "LISTEN_PID": "1", "LISTEN_FDNAMES": "control"}
    done = subprocess.run(
        [sys.executable, str(DEMO), "systemd:control"],
        env=env,
        capture_output=True,
        timeout=TIMEOUT,
        cwd=str(ROOT),
    )
    assert done.returncode != 0
    assert "LISTEN_PID is not this process" in done.stderr.decode()


def test_systemd_fd_that_is_not_listening_is_refused(sock_dir: str) -> None:
    unbound = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    env = {**os.environ, "LISTEN_FDNAMES": "control"}
    argv = [sys.executable, "-c", SD_WRAPPER, str(unbound.fileno()), str(DEMO), "systemd:control"]
    try:
        done = subprocess.run(
            argv, env=env, pass_fds=(unbound.fileno(),), capture_output=True, timeout=TIMEOUT, cwd=str(ROOT)
        )
    finally:
        unbound.close()
    assert done.returncode != 0
    assert "is not a listening UNIX socket" in done.stderr.decode()


def test_example_systemd_units_agree() -> None:
    unit_dir = ROOT / "examples" / "systemd"
    sock_unit = (unit_dir / "jrpc-demo.socket").read_text()
    service = (unit_dir / "jrpc-demo.service").read_text()
    assert "[Socket]" in sock_unit
    assert "ListenStream=/" in sock_unit
    assert "FileDescriptorName=control" in sock_unit
    assert "SocketMode=0660" in sock_unit
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert exec_start.endswith("demo_server.py systemd:control")
    assert "KillSignal=SIGTERM" in service


def test_no_leftover_flock_or_fds_after_failed_starts(sock_dir: str) -> None:
    """Failed starts (live path, foreign file) leak no descriptor, no lock, no lock file."""
    path = os.path.join(sock_dir, "s.sock")
    with served(path, basic_methods()):  # warm up: what the first server in a process opens for good
        pass
    before = len(os.listdir("/proc/self/fd"))
    with served(path, basic_methods()):
        for _ in range(20):
            with pytest.raises(AddressInUseError):
                serve_in_thread(path, basic_methods())
    Path(path).write_text("x")
    for _ in range(20):
        with pytest.raises(ServerSetupError):
            serve_in_thread(path, basic_methods())
    assert len(os.listdir("/proc/self/fd")) == before
    assert os.listdir(sock_dir) == ["s.sock"], "a lock file or private directory was left behind"
