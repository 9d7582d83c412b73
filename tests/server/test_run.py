"""``run()`` for a process that is just the service (issue 15): it logs where it listens when
the application configured no logging, and a start-up failure is one line and exit 1."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

from helpers import TIMEOUT, ServerProcess

from jrpc_unix import Client, Response

SERVE = "import sys; from jrpc_unix import run; run(sys.argv[1], {'ping': lambda: 'pong'})"
CONFIGURED = "import logging, sys; logging.basicConfig(level=logging.WARNING); " + SERVE.split("; ", 1)[1]


def test_run_logs_where_it_listens(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    log = os.path.join(sock_dir, "log")
    with ServerProcess([sys.executable, "-c", SERVE, path], log, lambda: os.path.exists(path)) as server:
        with Client(path) as client:
            assert client.call("ping") == "pong"
        assert server.signal(signal.SIGTERM) == 0
        lines = server.log().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(rf"{stamp} INFO jrpc_unix\.server listening on {re.escape(path)}", lines[0]), lines
    assert any(line.endswith(f"INFO jrpc_unix.server stopped accepting; removed {path}") for line in lines)


def test_run_leaves_the_applications_logging_alone(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    log = os.path.join(sock_dir, "log")
    with ServerProcess([sys.executable, "-c", CONFIGURED, path], log, lambda: os.path.exists(path)) as server:
        assert server.signal(signal.SIGTERM) == 0
        assert "listening on" not in server.log()  # WARNING and up, as the application said


def test_a_start_up_failure_is_one_line(sock_dir: str) -> None:
    missing = os.path.join(sock_dir, "no", "such", "dir", "s.sock")
    done = subprocess.run(
        [sys.executable, "-c", SERVE, missing], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"jrpc-unix: cannot serve on {missing}: ")
    assert done.stderr.count("\n") == 1, done.stderr
    path = os.path.join(sock_dir, "s.sock")
    log = os.path.join(sock_dir, "log")
    with ServerProcess([sys.executable, "-c", SERVE, path], log, lambda: os.path.exists(path)):
        done = subprocess.run(
            [sys.executable, "-c", SERVE, path], capture_output=True, text=True, timeout=TIMEOUT
        )
    assert (done.returncode, done.stderr) == (
        1,
        f"jrpc-unix: cannot serve on {path}: another server is already listening on {path}\n",
    )


def test_response_repr() -> None:
    assert repr(Response.ok([1])) == "Response.ok([1])"
    assert repr(Response.fail("no", code=7)) == "Response.fail('no', code=7)"
    assert repr(Response.fail("no", data={"a": 1})) == "Response.fail('no', code=1, data={'a': 1})"


def test_a_file_name_too_long_for_the_kernel_says_the_limit(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "x" * 120)
    done = subprocess.run(
        [sys.executable, "-c", SERVE, path], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"jrpc-unix: cannot serve on {path}: socket file name is too long")
    assert done.stderr.endswith("bytes through /proc/self/fd; the kernel allows at most 107)\n")
