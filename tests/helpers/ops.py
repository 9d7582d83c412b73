"""Helpers for the operations tests: socket files, other users, process figures, servers.

Reuses helpers/__init__.py (TIMEOUT, wait_for, LineClient, the server processes) and adds what
the socket-file, access, limits, fault and stop tests need, and the thread server
(:func:`served`). Every wait is bounded polling of a real condition.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from helpers import TIMEOUT, LineClient, wait_for
from jrpc_unix import Methods, ServerThread, serve_in_thread
from jrpc_unix._address import socket_name

PING = b'{"jsonrpc":"2.0","method":"ping","id":"ping"}\n'
PONG = {"jsonrpc": "2.0", "result": "pong", "id": "ping"}


# -- figures of a process (from /proc) ----------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def thread_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def figures(pid: int) -> dict[str, int]:
    return {"rss_kib": rss_kib(pid), "fds": fd_count(pid), "threads": thread_count(pid)}


def quiet_demo_figures(pid: int, path: str) -> dict[str, int]:
    """The demo's figures with no client connected (found through its ``stats`` method)."""
    with LineClient(path) as c:

        def quiet() -> bool:
            server = c.call("stats")["result"]["server"]
            return bool(server["connections"]["open"] == 1 and server["in_flight"] == 0)

        wait_for(quiet, "the server to have no other connection")
        now = figures(pid)
    now["fds"] -= 1  # the stats connection's own descriptor
    wait_for(lambda: fd_count(pid) == now["fds"], "the stats connection to close")
    return now


#: Measured figures of the fault tests, printed at the end of the session (see conftest-free
#: reporting in test_faults.py) so the report can quote them.
MEASURED: list[str] = []


def record(name: str, before: Mapping[str, int], after: Mapping[str, int], **extra: Any) -> str:
    text = (
        f"{name}: RSS {before['rss_kib'] / 1024:.1f} -> {after['rss_kib'] / 1024:.1f} MiB, "
        f"fds {before['fds']} -> {after['fds']}"
    )
    if extra:
        text += ", " + ", ".join(f"{k} {v}" for k, v in extra.items())
    MEASURED.append(text)
    print(text)
    return text


# -- raw clients ----------------------------------------------------------------------------------


def ping(path: str) -> bool:
    """A fresh connection answers ping (the server is alive and serving)."""
    with LineClient(path) as c:
        c.send(PING)
        return bool(c.read_json() == PONG)


def readlines(c: LineClient, n: int) -> list[Any]:
    return [c.read_json() for _ in range(n)]


def read_until_eof_or_error(c: LineClient) -> bytes:
    """All bytes until EOF; a reset by the peer counts as EOF."""
    try:
        return c.read_to_eof()
    except ConnectionResetError:
        return b""


def req(method: str, params: Any = None, rid: Any = None, notify: bool = False) -> bytes:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    if not notify:
        obj["id"] = rid
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


# -- in-process servers ---------------------------------------------------------------------------


@contextlib.contextmanager
def served(
    path: str, methods: Methods | Mapping[str, Callable[..., Any]], **options: Any
) -> Iterator[ServerThread]:
    """serve_in_thread for the body; stopped (bounded) and joined afterwards."""
    handle = serve_in_thread(path, methods, **options)
    try:
        yield handle
    finally:
        handle.stop(timeout=TIMEOUT)
        assert not handle.running, "the server thread did not end"


def basic_methods() -> Methods:
    m = Methods()

    @m.add
    def ping() -> str:
        return "pong"

    @m.add
    def echo(msg: Any) -> Any:
        return msg

    return m


# -- umask ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# -- another user ---------------------------------------------------------------------------------

AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NOBODY_UID = 65534
NOBODY_GID = 65534

#: A stdlib-only client run as another user: connect, send the lines, read ``expect`` lines (or
#: to EOF), report what happened as one JSON line on stdout.
CLIENT_SCRIPT = textwrap.dedent(
    """
    import errno, json, os, socket, sys
    path, payload, expect, timeout = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), float(sys.argv[4])
    out = {"uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
           "error": None, "lines": [], "eof": False}
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(("\\0" + path[1:]) if path.startswith("@") else path)
    except OSError as exc:
        out["error"] = errno.errorcode.get(exc.errno, str(exc))
        print(json.dumps(out)); sys.exit(0)
    try:
        s.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        out["send_failed"] = True  # the server closed on us (a refused peer); read what it said
    buf = b""
    try:
        while expect < 0 or len(out["lines"]) < expect:
            chunk = s.recv(65536)
            if not chunk:
                out["eof"] = True
                break
            buf += chunk
            while b"\\n" in buf:
                line, _, buf = buf.partition(b"\\n")
                out["lines"].append(json.loads(line))
        if not out["eof"]:  # nothing more may come: half-close, the server answers all, closes
            if not out.get("send_failed"):
                s.shutdown(socket.SHUT_WR)
            extra = s.recv(65536)
            out["eof"] = extra == b""
            out["extra"] = extra.decode(errors="replace")
    except (ConnectionResetError, BrokenPipeError):
        out["eof"] = True  # closed by the server (with our data unread): disconnected all the same
    except socket.timeout:
        out["timeout"] = True
    out["partial"] = buf.decode(errors="replace")
    print(json.dumps(out))
    """
)


@functools.cache
def python_for_others() -> str | None:
    """A Python interpreter that ``nobody`` can run (the venv may live under /root)."""
    for exe in ("/usr/bin/python3", sys.executable):
        try:
            done = subprocess.run(
                [*AS_NOBODY, exe, "-I", "-S", "-c", "print('ok')"],
                capture_output=True,
                timeout=TIMEOUT,
                cwd="/",
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if done.returncode == 0 and done.stdout.strip() == b"ok":
            return exe
    return None


#: Skips a module or test that runs clients as ``nobody``: it needs root and a Python they can run.
needs_other_users = pytest.mark.skipif(
    os.geteuid() != 0 or python_for_others() is None,
    reason="needs root (to run clients as other users) and a Python they can run",
)


def run_as(
    user_args: list[str], path: str, payload: bytes = b"", expect: int = 1, timeout: float = TIMEOUT
) -> dict[str, Any]:
    """Run CLIENT_SCRIPT under ``user_args`` (a setpriv prefix); its JSON report."""
    exe = python_for_others()
    assert exe is not None, "no Python interpreter runnable as another user"
    done = subprocess.run(
        [*user_args, exe, "-I", "-S", "-c", CLIENT_SCRIPT, path, payload.decode(), str(expect), str(timeout)],
        capture_output=True,
        timeout=timeout + TIMEOUT,
        cwd="/",
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def as_nobody(path: str, payload: bytes = b"", expect: int = 1) -> dict[str, Any]:
    return run_as(AS_NOBODY, path, payload, expect)


#: Connect, send the lines, print the first ``expect`` lines read as a JSON list, close. (Unlike
#: ops_helpers' client it does not wait for EOF, which a subscribed connection does not send.)
READER = textwrap.dedent(
    """
    import json, socket, sys
    path, payload, expect, timeout = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), float(sys.argv[4])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    s.sendall(payload)
    buf, lines = b"", []
    while len(lines) < expect:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        while b"\\n" in buf and len(lines) < expect:
            line, _, buf = buf.partition(b"\\n")
            lines.append(json.loads(line))
    print(json.dumps(lines))
    """
)


def reader(path: str, payload: bytes, expect: int) -> subprocess.Popen[bytes]:
    """READER as ``nobody``, started (its lines: ``read_lines``)."""
    exe = python_for_others()
    assert exe is not None
    return subprocess.Popen(
        [*AS_NOBODY, exe, "-I", "-S", "-c", READER, path, payload.decode(), str(expect), str(TIMEOUT)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
    )


def read_lines(proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    try:
        out, err = proc.communicate(timeout=TIMEOUT * 2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err.decode(errors="replace")
    lines: list[dict[str, Any]] = json.loads(out)
    return lines


def open_for_others(directory: str) -> None:
    """Let other users reach the socket inside ``directory`` (search permission only)."""
    os.chmod(directory, 0o711)


# -- connecting -----------------------------------------------------------------------------


def connectable(path: str) -> bool:
    """Does a connect to ``path`` succeed (long paths too)?"""
    with socket_name(path) as name:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(name)
        except OSError:
            return False
        finally:
            s.close()
    return True


# -- a background stat() poller -------------------------------------------------------------------

#: Watches one socket path in a separate process (no GIL shared with the server) as fast as it
#: can: every (inode, mode, gid) it sees, and whether the path vanished after it had appeared.
POLLER_SCRIPT = textwrap.dedent(
    """
    import json, os, stat, sys
    path, stop = sys.argv[1], sys.argv[2]
    seen, vanished, polls, present = {}, 0, 0, False
    announced = set()
    while True:
        polls += 1
        if polls == 2000:
            print("ready", flush=True)  # polling hot: the caller may start its server now
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if present:
                vanished += 1
            present = False
        else:
            present = True
            key = (st.st_ino, stat.S_IMODE(st.st_mode), st.st_gid, stat.S_ISSOCK(st.st_mode))
            seen[key] = seen.get(key, 0) + 1
            if st.st_ino not in announced:
                announced.add(st.st_ino)
                print(json.dumps({"ino": st.st_ino}), flush=True)
        if polls % 64 == 0 and os.path.exists(stop):
            break
    print(json.dumps({"polls": polls, "vanished": vanished,
                      "seen": [list(k) + [n] for k, n in seen.items()]}), flush=True)
    """
)


class StatPoller:
    """Run POLLER_SCRIPT on ``path``; ``wait_inode`` for a new file; ``finish`` for the report."""

    def __init__(self, path: str, control_dir: str) -> None:
        self.stop_file = os.path.join(control_dir, f"stop-poller-{os.getpid()}-{id(self)}")
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-c", POLLER_SCRIPT, path, self.stop_file],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        self._lines: list[str] = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_line(lambda line: line == "ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cv:
                self._lines.append(raw.decode().strip())
                self._cv.notify_all()
        with self._cv:
            self._lines.append("<eof>")
            self._cv.notify_all()

    def _wait_line(self, pred: Callable[[str], bool]) -> str:
        with self._cv:
            found = self._cv.wait_for(lambda: next((x for x in self._lines if pred(x)), None), TIMEOUT)
        assert found, f"poller never printed the expected line; got {self._lines!r}"
        return found

    def wait_inode(self, ino: int) -> None:
        """Until the poller has seen the file with this inode at the path."""
        self._wait_line(lambda line: line.startswith("{") and json.loads(line).get("ino") == ino)

    def finish(self) -> dict[str, Any]:
        Path(self.stop_file).touch()
        try:
            self.proc.wait(timeout=TIMEOUT)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.stop_file)
        self._reader.join(TIMEOUT)
        final = self._wait_line(lambda line: line.startswith('{"polls"'))
        report: dict[str, Any] = json.loads(final)
        return report

    def kill(self) -> None:
        """End the poller if still running and release its pipe (always call it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=TIMEOUT)
        self._reader.join(TIMEOUT)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def stale_socket(path: str) -> int:
    """Leave a socket file nobody listens on at ``path`` (as a crashed server would); its inode."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    return os.lstat(path).st_ino


def no_threads_but(baseline: set[int]) -> list[str]:
    """Threads alive now that were not in ``baseline``, except trio's idle worker-thread cache.

    trio keeps a worker thread idle for 10 s after ``trio.to_thread`` (the server binds its socket
    in one); those are parked, not spinning, and exit by themselves.
    """
    return [
        t.name
        for t in threading.enumerate()
        if t.ident not in baseline and not t.name.startswith("Trio thread")
    ]


@contextlib.contextmanager
def busy_thread(switch_interval: float = 0.001) -> Iterator[None]:
    """Another thread of this process that keeps the GIL busy, as a loaded server's threads do.

    A server thread then waits up to ``switch_interval`` for the GIL after each system call:
    the windows between two calls grow from microseconds to what a real server under load has,
    so a race a test looks for shows up within a few tries.
    """
    done = threading.Event()

    def spin() -> None:
        while not done.is_set():
            pass

    spinner = threading.Thread(target=spin, daemon=True, name="busy")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(switch_interval)
    spinner.start()
    try:
        yield
    finally:
        done.set()
        spinner.join(TIMEOUT)
        sys.setswitchinterval(interval)
