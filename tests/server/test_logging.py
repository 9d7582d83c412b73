"""Logging cannot be turned against the server: client-caused lines are bounded in number and
length, and no log handler can block the event loop (jrpc_unix._server.logqueue, jrpc_unix._service.throttle).

The demo runs as a real process whose stderr is a file, or a pipe that nobody reads.
"""

from __future__ import annotations

import array
import fcntl
import json
import logging
import os
import re
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DEMO, TIMEOUT, DemoProcess, LineClient, wait_for
from helpers.ops import PING, PONG, basic_methods, connectable, ping, req, served

from jrpc_unix._server import logqueue as _logqueue

F_SETPIPE_SZ = 1031  # fcntl.F_SETPIPE_SZ from Python 3.10 on Linux; spelled out for mypy

#: Requests that fail: a ValueError inside sleep (a negative length), wrong param types
#: (answered -32602 before the handler), a RuntimeError in crash, and notifications that fail
#: (unknown method, wrong param types).
FAILING = [
    req("sleep", [-1], 1),
    req("sum", ["a", 1], 2),
    req("crash", None, 3),
    req("no.such.method", ["x"], notify=True),
    req("subtract", ["a", "b"], notify=True),
]


def _failing_requests(n: int) -> bytes:
    return b"".join(FAILING[i % len(FAILING)] for i in range(n))


def _answers_expected(n: int) -> int:
    return sum(1 for i in range(n) if i % len(FAILING) < 3)


def _send_and_read(path: str, data: bytes, answers: int) -> list[bytes]:
    """Send ``data`` on one connection while reading ``answers`` lines (a thread writes)."""
    with LineClient(path) as c:
        writer = threading.Thread(target=c.send, args=(data,), daemon=True)
        writer.start()
        lines = [c.readline() for _ in range(answers)]
        writer.join(TIMEOUT)
    return lines


@pytest.fixture
def undrained(sock_dir: str) -> Iterator[tuple[subprocess.Popen[bytes], int, str]]:
    """The demo with stdout and stderr on a 4 KiB pipe that is read only when the test says."""
    path = os.path.join(sock_dir, "demo.sock")
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    proc = subprocess.Popen([sys.executable, str(DEMO), path], stdin=subprocess.DEVNULL, stdout=w, stderr=w)
    os.close(w)
    try:
        wait_for(lambda: proc.poll() is not None or connectable(path), "the demo to listen")
        yield proc, r, path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)
        os.close(r)


def _waiting_in_pipe(fd: int) -> int:
    count = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, count)
    return count[0]


def test_a_log_pipe_nobody_reads_does_not_freeze_the_server(
    undrained: tuple[subprocess.Popen[bytes], int, str],
) -> None:
    proc, pipe, path = undrained
    lines = _send_and_read(path, _failing_requests(3000), _answers_expected(3000))
    assert all(b'"error"' in line for line in lines)
    wait_for(lambda: _waiting_in_pipe(pipe) > 3072, "the log pipe to fill up")  # 4 KiB: stuck
    for _ in range(20):  # a fresh connection each time: the whole server still answers
        assert ping(path)
    more = _send_and_read(path, _failing_requests(1000), _answers_expected(1000))
    assert len(more) == _answers_expected(1000)
    # Someone reads the log at last: the server stops cleanly, and the log says what it skipped.
    drained = bytearray()
    reader = threading.Thread(target=lambda: drained.extend(_read_all(pipe)), daemon=True)
    reader.start()
    proc.terminate()
    assert proc.wait(TIMEOUT) == 0
    reader.join(TIMEOUT)
    log = drained.decode(errors="replace")
    assert "Traceback" in log
    assert re.search(r"\d+ more 'crash sleep' messages suppressed", log), log[-2000:]


def _read_all(fd: int) -> bytes:
    out = b""
    while chunk := os.read(fd, 65536):
        out += chunk
    return out


def test_2000_crashing_calls_cost_a_few_kilobytes_of_log(sock_dir: str) -> None:
    """A failing handler made every call log a traceback: 485 bytes of log per 64-byte call."""
    path, log_path = os.path.join(sock_dir, "demo.sock"), os.path.join(sock_dir, "log")
    with DemoProcess(path, log_path) as demo:
        start = Path(log_path).stat().st_size
        lines = _send_and_read(path, req("sleep", [-1], 1) * 2000, 2000)
        error_ids = [json.loads(line)["error"]["data"]["error_id"] for line in lines]
        assert demo.signal() == 0
        log = demo.log()
    grown = len(log.encode()) - start
    assert grown < 16_000, grown  # was 970 kB
    assert log.count("Traceback") == 1
    logged = [i for i in error_ids if i in log]
    # 20 lines per 10 s, each with its error id (40 if the calls straddle two periods).
    assert logged[:20] == error_ids[:20]
    assert len(logged) <= 40
    assert re.search(rf"{2000 - len(logged)} more 'crash sleep' messages suppressed", log)


def test_client_supplied_text_is_cut_short_in_the_log(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A 1 MB method name in a failing notification must not become a 1 MB log line."""
    with served(sock_path, basic_methods()), LineClient(sock_path) as c:
        c.send(req("x" * 1_000_000, notify=True) + PING)
        assert c.read_json() == PONG
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 1
    assert len(failed[0]) < 1000


# -- the queue itself ---------------------------------------------------------------------------


class Stuck(logging.Handler):
    """A handler that blocks until released, like a write to a full pipe."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.release.wait(TIMEOUT)
        self.seen.append(record.getMessage())


def test_a_stuck_handler_costs_records_not_time() -> None:
    logger = logging.getLogger("jrpc_unix.test_logging")  # exists before the queue starts
    stuck = Stuck()
    logger.addHandler(stuck)
    logger.propagate = False
    _logqueue.start_log_thread()
    try:
        logger.warning("first")
        assert stuck.entered.wait(TIMEOUT)  # the thread is stuck in the handler from now on
        done = threading.Event()

        def log_many() -> None:
            for i in range(1500):
                logger.warning("record %d", i)
            done.set()

        threading.Thread(target=log_many, daemon=True).start()
        assert done.wait(TIMEOUT), "logging blocked behind a stuck handler"
        stuck.release.set()
    finally:
        _logqueue.stop_log_thread()
        logger.removeHandler(stuck)
        logger.propagate = True
    assert stuck.seen[0] == "first"
    assert stuck.seen[1:1001] == [f"record {i}" for i in range(_logqueue.CAPACITY)]
    assert logger.filters == []  # the server stopped: records go straight to the handlers again


def test_the_count_of_dropped_records_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("jrpc_unix.test_logging")
    stuck = Stuck()
    logger.addHandler(stuck)
    _logqueue.start_log_thread()
    try:
        logger.warning("first")
        assert stuck.entered.wait(TIMEOUT)
        for i in range(1500):
            logger.warning("record %d", i)
        stuck.release.set()
    finally:
        _logqueue.stop_log_thread()
        logger.removeHandler(stuck)
    assert "500 log records dropped: the log handlers were too slow" in caplog.messages
