"""Another user attacks the socket file's directory (specs/security.md), with real processes.

The attacker is a real process running as ``nobody`` (``setpriv``): it swaps symlinks into a
world-writable directory that is not sticky while a root server starts there again and again,
or holds ``flock`` locks on the directory and on every file in it that it can open. The server
must never change the mode or owner of anything it did not create, and must start and stop
promptly whatever the locks.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import stat
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TIMEOUT, DemoProcess, LineClient, short_tmpdir, wait_for
from helpers.ops import AS_NOBODY, NOBODY_UID, basic_methods, busy_thread, ping, python_for_others, req

from jrpc_unix import AddressInUseError, ServerSetupError, serve_in_thread
from jrpc_unix._server import listener as _listener

NOGROUP = 65534
STARTS = int(os.environ.get("RACER_STARTS", "150"))

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run another user's process")

#: Run as nobody: ``racer DIR TARGET SKIP STOP``. As soon as an entry other than SKIP appears in
#: DIR (inotify, polled without sleeping), rename it away and put a symlink to TARGET in its
#: place, atomically (RENAME_EXCHANGE with a symlink made beforehand: the name never goes missing);
#: until STOP exists. C, because the window it aims at is microseconds wide. TARGET is a
#: directory: a chmod through the symlink hits it, a path through it reaches the files inside.
RACER_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) return 2;
    const char *dir = argv[1], *target = argv[2], *skip = argv[3], *stop = argv[4];
    int ifd = inotify_init1(IN_NONBLOCK);
    if (ifd < 0 || inotify_add_watch(ifd, dir, IN_CREATE | IN_MOVED_TO) < 0) return 3;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) return 4;
    char made[64][256] = {{0}};  /* our own symlinks: their creation is an event too */
    char buf[65536] __attribute__((aligned(8)));
    long swaps = 0, polls = 0;
    char ready[64];
    snprintf(ready, sizeof ready, "racer-%ld", swaps);
    if (symlinkat(target, dfd, ready) < 0) return 5;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        if (++polls % 65536 == 0 && access(stop, F_OK) == 0) break;
        ssize_t n = read(ifd, buf, sizeof buf);
        if (n <= 0) continue;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;
            p += sizeof *ev + ev->len;
            if (!ev->len || !strcmp(ev->name, skip) || !strncmp(ev->name, "racer-", 6)) continue;
            int mine = 0;
            for (int i = 0; i < 64; i++)
                if (!strcmp(made[i], ev->name)) { made[i][0] = 0; mine = 1; break; }
            if (mine) continue;
            if (renameat2(dfd, ready, dfd, ev->name, RENAME_EXCHANGE) == 0) {
                snprintf(made[swaps % 64], 256, "%s", ev->name);
                swaps++;
                snprintf(ready, sizeof ready, "racer-%ld", swaps);
                if (symlinkat(target, dfd, ready) < 0) return 6;
            }
        }
    }
    printf("{\"swaps\": %ld, \"polls\": %ld}\n", swaps, polls);
    return 0;
}
"""

#: Run as nobody: flock DIR, then keep opening and flocking every entry of DIR that it can open
#: (a lock file, whatever its name), printing "holding" once the directory lock is held, until
#: STOP exists; then a JSON report of what it could lock.
LOCKER = textwrap.dedent(
    """
    import fcntl, json, os, sys, time
    directory, stop = sys.argv[1:3]
    held = {}
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(dfd, fcntl.LOCK_EX)
    print("holding", flush=True)
    denied = 0
    while not os.path.exists(stop):
        for name in os.listdir(dfd):
            if name in held:
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
            except OSError:
                denied += 1
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held[name] = fd
            except OSError:
                os.close(fd)
        time.sleep(0.0005)
    print(json.dumps({"locked": sorted(held), "denied": denied}), flush=True)
    """
)


class NobodyProcess:
    """``argv`` run as ``nobody`` with a STOP file as its last argument; read its lines."""

    def __init__(self, argv: list[str], stop_file: str) -> None:
        self.stop_file = stop_file
        self.proc = subprocess.Popen(
            [*AS_NOBODY, *argv, stop_file], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd="/"
        )
        assert self.proc.stdout is not None
        self._stdout = self.proc.stdout

    def wait_line(self, wanted: str) -> None:
        """Until the process prints ``wanted`` (a blocking read, bounded by a kill after TIMEOUT)."""
        timer = threading.Timer(TIMEOUT, self.proc.kill)
        timer.start()
        try:
            line = self._stdout.readline().decode().strip()
        finally:
            timer.cancel()
        assert line == wanted, f"nobody's process printed {line!r}, not {wanted!r}"

    def finish(self) -> dict[str, Any]:
        """Tell it to stop; its last line, a JSON report."""
        Path(self.stop_file).touch()
        out, _ = self.proc.communicate(timeout=TIMEOUT)
        report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
        return report

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self._stdout.close()


@contextlib.contextmanager
def nobody_process(argv: list[str], control_dir: str) -> Iterator[NobodyProcess]:
    """``argv`` as nobody, told to stop by a file in ``control_dir`` (made readable to it)."""
    os.chmod(control_dir, 0o755)
    proc = NobodyProcess(argv, os.path.join(control_dir, "stop"))
    try:
        yield proc
    finally:
        proc.kill()


def python_as_nobody(script: str, *args: str) -> list[str]:
    exe = python_for_others()
    if exe is None:
        pytest.skip("no Python interpreter runnable as nobody")
    return [exe, "-I", "-S", "-c", script, *args]


@pytest.fixture(scope="module")
def racer() -> Iterator[str]:
    """RACER_C built with gcc, in a directory nobody may enter."""
    with short_tmpdir() as d:
        os.chmod(d, 0o755)
        Path(d, "racer.c").write_text(RACER_C)
        exe = os.path.join(d, "racer")
        subprocess.run(
            ["gcc", "-O2", "-Wall", "-Werror", "-o", exe, os.path.join(d, "racer.c")], check=True, timeout=60
        )
        yield exe


def identity(path: str) -> tuple[int, int, int, int, bytes]:
    st = os.lstat(path)
    content = b"" if stat.S_ISDIR(st.st_mode) else Path(path).read_bytes()
    return st.st_ino, st.st_mode, st.st_uid, st.st_gid, content


# -- chmod/chown through symlinks (issue 9, point 2) --------------------------------------------------


def test_racer_swapping_symlinks_never_gets_a_foreign_file_chmodded_or_chowned(racer: str) -> None:
    """nobody swaps symlinks to root's files into a world-writable, non-sticky directory while
    a root server (mode 0660, group nogroup) starts there 150 times: root's files stay as they
    were. Every start either serves or fails with a clear setup error."""
    with short_tmpdir() as base:
        os.chmod(base, 0o755)
        public = os.path.join(base, "pub")
        os.mkdir(public)
        os.chmod(public, 0o777)  # anyone may write, and not sticky: the dangerous kind
        targets = os.path.join(base, "t")
        os.mkdir(targets, 0o755)
        victims = [os.path.join(targets, name) for name in ("s", "sock", "socket", "x.sock")]
        for v in victims:
            Path(v).write_bytes(b"root's secret\n")
            os.chmod(v, 0o600)
        victims.append(targets)
        before = {v: identity(v) for v in victims}
        final = "x.sock"
        path = os.path.join(public, final)
        outcomes: dict[str, int] = {}
        changed = 0
        with nobody_process([racer, public, targets, final], base) as attacker, busy_thread():
            attacker.wait_line("ready")
            for _ in range(STARTS):
                try:
                    with serve_in_thread(path, basic_methods(), socket_mode=0o660, socket_group=NOGROUP):
                        st = os.lstat(path)
                        ours = stat.S_ISSOCK(st.st_mode) and st.st_uid == 0
                        ok = ours and (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, NOGROUP)
                        key = "served" if ok and ping(path) else f"served, but {path} is {oct(st.st_mode)}"
                    outcomes[key] = outcomes.get(key, 0) + 1
                except (ServerSetupError, AddressInUseError) as exc:
                    key = type(exc).__name__
                    outcomes[key] = outcomes.get(key, 0) + 1
                for v in victims:
                    if identity(v) != before[v]:
                        changed += 1
                        os.chown(v, 0, 0)
                        os.chmod(v, stat.S_IMODE(before[v][1]))
                for name in os.listdir(public):  # what the racer left: let the next start begin clean
                    entry = os.path.join(public, name)
                    if os.path.islink(entry) != name.startswith("racer-"):  # not its next symlink
                        (os.unlink if os.path.islink(entry) or not os.path.isdir(entry) else os.rmdir)(entry)
            report = attacker.finish()
        print(f"racer: {report}; starts: {outcomes}; victim changed {changed} times")
        assert report["swaps"] > 0, "the racer never swapped anything: the test proves nothing"
        assert changed == 0, f"root's files were changed {changed} times in {STARTS} starts ({outcomes})"
        for v in victims:
            assert identity(v) == before[v]
        assert set(outcomes) <= {"served", "ServerSetupError"}, outcomes
        assert outcomes.get("served", 0) > 0, outcomes


# -- the directory lock (issue 9, point 3) --------------------------------------------------------------


def _in_background(fn: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    """``fn(*args)`` in a thread of its own (a call that blocks cannot hang the test)."""
    result: list[Any] = []

    def call() -> None:
        try:
            result.append(fn(*args))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, result


def test_nobody_holding_flocks_cannot_block_start_or_stop(sock_dir: str) -> None:
    """nobody can read the directory, so it can flock it, and it tries every file in it too.

    Start and stop both complete (before: the start blocked in flock forever, without a word).
    """
    os.chmod(sock_dir, 0o755)
    path = os.path.join(sock_dir, "s.sock")
    took = []
    with short_tmpdir() as control, nobody_process(python_as_nobody(LOCKER, sock_dir), control) as locker:
        locker.wait_line("holding")
        handles: list[Any] = []
        try:
            for _ in range(5):
                start = time.monotonic()
                starter, handles = _in_background(serve_in_thread, path, basic_methods())
                starter.join(TIMEOUT)
                assert not starter.is_alive(), "the start blocked on nobody's lock"
                handle = handles[0]
                assert not isinstance(handle, BaseException), handle
                assert ping(path)
                stopper, _ = _in_background(handle.stop)
                stopper.join(TIMEOUT)
                assert not stopper.is_alive(), "the stop blocked on nobody's lock"
                assert not handle.running
                took.append(time.monotonic() - start)
                assert not os.path.lexists(path)
            report = locker.finish()
        finally:
            locker.kill()  # releases its locks: whatever was stuck on them ends
            for h in handles:
                if not isinstance(h, BaseException):
                    h.stop(timeout=TIMEOUT)
    print(f"start+ping+stop under nobody's flock: {max(took) * 1000:.0f} ms at most; nobody: {report}")
    assert not [name for name in report["locked"] if "lock" in name], report
    assert os.listdir(sock_dir) == []


def _in_flight(path: str) -> int:
    with LineClient(path) as c:
        return int(c.call("stats")["result"]["server"]["in_flight"])


def test_sigterm_under_nobodys_flock_answers_and_exits(sock_dir: str) -> None:
    """The demo service, a call in flight, nobody flocks the directory, SIGTERM: the call is
    answered, the file removed, exit 0 (before: the event loop blocked in flock for good)."""
    os.chmod(sock_dir, 0o755)
    path = os.path.join(sock_dir, "demo.sock")
    with (
        short_tmpdir() as control,
        DemoProcess(path, os.path.join(control, "log")) as demo,
        LineClient(path) as c,
        nobody_process(python_as_nobody(LOCKER, sock_dir), control) as locker,
    ):
        locker.wait_line("holding")
        c.send(req("sleep", [0.3], 1))
        wait_for(lambda: _in_flight(path) == 1, "the call to run")
        start = time.monotonic()
        demo.proc.send_signal(signal.SIGTERM)
        try:
            assert c.read_json() == {"jsonrpc": "2.0", "result": 0.3, "id": 1}
            code = demo.proc.wait(timeout=TIMEOUT)
        finally:
            locker.kill()
        took = time.monotonic() - start
        print(f"SIGTERM under nobody's flock: exited {code} in {took:.2f} s")
        assert code == 0
        assert not os.path.lexists(path)
        assert "Traceback" not in demo.log()


#: Run as nobody: create LOCK open to all, flock it, print "holding", wait for STOP.
HOLD_LOCK_FILE = textwrap.dedent(
    """
    import fcntl, os, sys, time
    lock, stop = sys.argv[1:3]
    os.umask(0)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("holding", flush=True)
    while not os.path.exists(stop):
        time.sleep(0.01)
    print('{"done": true}', flush=True)
    """
)


def test_a_lock_file_someone_else_made_is_refused_at_once(sock_dir: str) -> None:
    """In a sticky world-writable directory (like /tmp), nobody makes our lock file first, open to
    all, and holds a lock on it: the start fails at once, saying why; nothing of nobody's changes."""
    os.chmod(sock_dir, 0o1777)
    path = os.path.join(sock_dir, "s.sock")
    lock = os.path.join(sock_dir, ".s.sock.jrpc-lock")
    with short_tmpdir() as control, nobody_process(python_as_nobody(HOLD_LOCK_FILE, lock), control) as holder:
        holder.wait_line("holding")
        before = os.lstat(lock)
        starter, result = _in_background(serve_in_thread, path, basic_methods())
        starter.join(TIMEOUT)
        try:
            assert not starter.is_alive(), "the start blocked on nobody's lock file"
        finally:
            holder.kill()
            starter.join(TIMEOUT)
            for h in result:
                if not isinstance(h, BaseException):
                    h.stop(timeout=TIMEOUT)
        assert isinstance(result[0], ServerSetupError), result
        assert str(result[0]) == (
            f"refusing the lock file {lock}: it is not a private file of uid 0 "
            f"(uid {NOBODY_UID}, -rw-rw-rw-, 1 links)"
        )
        after = os.lstat(lock)
        assert (after.st_ino, after.st_mode, after.st_uid) == (before.st_ino, before.st_mode, before.st_uid)
        assert not os.path.lexists(path)


def test_our_own_lock_held_too_long_is_a_clear_error(sock_path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only our own uid can hold the lock (a starter of ours, stuck): the wait is bounded."""
    monkeypatch.setattr(_listener, "LOCK_WAIT", 0.2)
    directory, name = os.path.split(sock_path)
    lock = os.path.join(directory, f".{name}.jrpc-lock")
    fd = os.open(lock, os.O_RDONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(
            ServerSetupError,
            match=(rf"timed out after 0.2 s waiting for {lock}: another process of uid 0 holds it"),
        ):
            serve_in_thread(sock_path, basic_methods())
    finally:
        os.close(fd)
    assert not os.path.lexists(sock_path)
    with serve_in_thread(sock_path, basic_methods()):  # released: it starts, and the lock file goes
        assert ping(sock_path)
        assert sorted(os.listdir(directory)) == [name]
