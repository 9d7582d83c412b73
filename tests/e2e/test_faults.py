"""Fault tests against the demo service as a real process: it stays healthy, and its memory,
descriptors and threads come back near where they started.

Figures come from /proc/<pid>: VmRSS, the entries of fd/ and task/. Bounds are generous but
meaningful: a leak per connection or per byte would blow through them. Every test is bounded in
time and count; each prints its measured figures (``pytest -s`` shows them).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import resource
import select
import socket
import threading

import pytest
from helpers import TIMEOUT, DemoProcess, LineClient, server_stats, wait_for
from helpers.ops import (
    PING,
    PONG,
    cpu_seconds,
    fd_count,
    figures,
    ping,
    quiet_demo_figures,
    record,
    req,
    rss_kib,
)

MiB = 1 << 20
RSS_SLACK_KIB = 20 * 1024


@pytest.fixture
def demo(demo: DemoProcess) -> DemoProcess:
    """conftest's fresh demo service, warmed up."""
    warm_up(demo.path)
    return demo


def warm_up(path: str) -> None:
    """Exercise the code paths once, so lazily imported modules are not counted as growth."""
    with LineClient(path) as c:
        c.send(b"garbage\n" + b"[" * 2000 + b"\n" + req("echo", ["x" * 100_000], 1) + PING)
        for _ in range(4):
            c.readline()


def quiet_figures(demo: DemoProcess) -> dict[str, int]:
    return quiet_demo_figures(demo.pid, demo.path)


def settle(demo: DemoProcess, before: dict[str, int]) -> dict[str, int]:
    """Wait until the server has closed every connection of the test; its figures then."""
    path = demo.path
    after = quiet_figures(demo)
    assert ping(path)
    return after


def assert_back(before: dict[str, int], after: dict[str, int], slack_kib: int = RSS_SLACK_KIB) -> None:
    assert after["fds"] == before["fds"], (before, after)
    assert after["threads"] <= before["threads"] + 1, (before, after)  # +1: trio's idle worker cache
    assert after["rss_kib"] - before["rss_kib"] < slack_kib, (before, after)


def exchange(path: str, data: bytes, chunk: int = 65536) -> list[bytes]:
    """Send ``data`` while reading answers, half-close, read to EOF; the answer lines."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    sock.setblocking(False)
    sent, buf, lines = 0, b"", []
    try:
        while True:
            want_write = [sock] if sent < len(data) else []
            readable, writable, _ = select.select([sock], want_write, [], TIMEOUT)
            assert readable or writable, "no progress within the timeout"
            if writable:
                with contextlib.suppress(BlockingIOError):
                    sent += sock.send(data[sent : sent + chunk])
                if sent == len(data):
                    sock.shutdown(socket.SHUT_WR)
            if readable:
                got = sock.recv(1 << 20)
                if not got:
                    break
                buf += got
                *done, buf = buf.split(b"\n")
                lines += done
    finally:
        sock.close()
    assert sent == len(data)
    assert buf == b"", "an answer without its newline"
    return lines


# -- garbage -----------------------------------------------------------------------------------------


def test_flood_of_garbage(demo: DemoProcess) -> None:
    path = demo.path
    before = quiet_figures(demo)
    rng = random.Random(1234)
    total_lines = 0

    def one(seed: int, results: list[int]) -> None:
        data = random.Random(seed).randbytes(4 * MiB) + b"\n" + PING
        lines = exchange(path, data)
        for line in lines:
            answer = json.loads(line)  # every answer is one valid JSON text
            if isinstance(answer, list):
                assert all(a["jsonrpc"] == "2.0" for a in answer)
            else:
                assert answer["jsonrpc"] == "2.0"
        assert json.loads(lines[-1]) == PONG, "the connection still serves after the garbage"
        results.append(len(lines))

    results: list[int] = []
    threads = [threading.Thread(target=one, args=(rng.random(), results), daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    peak = 0
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_kib(demo.pid))
        for t in threads:
            t.join(0.05)
    assert len(results) == 4, "a garbage client failed"
    total_lines = sum(results)
    after = settle(demo, before)
    record(
        "garbage flood (4 connections x 4 MiB random bytes)",
        before,
        after,
        answers=total_lines,
        peak_rss_mib=f"{peak / 1024:.1f}",
    )
    assert_back(before, after)
    assert total_lines > 4 * 10_000  # ~1 newline per 256 random bytes: each line got its error


def test_garbage_without_newlines_and_binary_zeros(demo: DemoProcess) -> None:
    path = demo.path
    before = quiet_figures(demo)
    rng = random.Random(99)
    noise = bytes(b for b in rng.randbytes(3 * MiB) if b != 0x0A)
    lines = exchange(path, noise + b"\x00" * MiB + b"\n" + PING)
    answers = [json.loads(x) for x in lines]
    assert answers[0]["error"]["code"] == -32001  # one line of 4 MiB: too large, once
    assert answers[-1] == PONG
    assert len(answers) == 2
    after = settle(demo, before)
    record("4 MiB line of random bytes without a newline", before, after)
    assert_back(before, after)


def test_32_mib_line(demo: DemoProcess) -> None:
    path = demo.path
    before = quiet_figures(demo)
    head = b'{"jsonrpc":"2.0","method":"echo","id":1,"params":["'
    data = head + b"a" * (32 * MiB) + b'"]}\n' + PING
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kib(demo.pid))
            stop.wait(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        lines = exchange(path, data)
    finally:
        stop.set()
        watcher.join(TIMEOUT)
    answers = [json.loads(x) for x in lines]
    assert answers == [
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {
                "code": -32001,
                "message": "Request too large",
                "data": "message exceeds the limit of 1048576 bytes",
            },
        },
        PONG,
    ]
    after = settle(demo, before)
    record("32 MiB line", before, after, peak_rss_mib=f"{peak[0] / 1024:.1f}")
    assert_back(before, after)
    # Never buffered whole: the peak stays far below the line's 32 MiB.
    assert peak[0] - before["rss_kib"] < 16 * 1024, (before, peak[0])


@pytest.mark.parametrize(
    "line",
    [
        b"[" * 100_000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"a":' * 100_000,
        b"[" * 100_000 + b"12345678901234567890",  # a long number: the stdlib parser's path
        b'{"jsonrpc":"2.0","method":"echo","id":5,"params":[' + b"[" * 100_000,
    ],
    ids=["open-brackets", "balanced", "open-objects", "with-long-number", "inside-params"],
)
def test_deep_nesting(demo: DemoProcess, line: bytes) -> None:
    path = demo.path
    before = quiet_figures(demo)
    with LineClient(path) as c:
        c.send(line + b"\n" + PING)
        first = c.read_json()
        assert first["id"] is None
        assert first["error"]["code"] == -32700
        assert c.read_json() == PONG  # the same connection goes on
    after = settle(demo, before)
    record(f"deep nesting ({line[:12]!r}... {len(line)} bytes)", before, after)
    assert_back(before, after)


def test_deep_but_legal_params_are_answered_or_refused_cleanly(demo: DemoProcess) -> None:
    path = demo.path
    with LineClient(path) as c:
        for depth in (200, 500, 1000):
            c.send(
                b'{"jsonrpc":"2.0","method":"echo","id":%d,"params":[' % depth
                + b"[" * depth
                + b"]" * depth
                + b"]}\n"
            )
            answer = c.read_json()
            assert answer["id"] == depth
            assert "result" in answer or answer["error"]["code"] in (-32603, -32700), answer
        c.send(PING)
        assert c.read_json() == PONG


# -- connections ----------------------------------------------------------------------------------


def test_2000_connect_close_cycles(demo: DemoProcess) -> None:
    path = demo.path
    before = quiet_figures(demo)
    cpu_before = cpu_seconds(demo.pid)
    kinds = ["close", "partial-line", "call-then-close", "ping-read-close"]
    for i in range(2000):
        kind = kinds[i % 4]
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(TIMEOUT)
        s.connect(path)
        if kind == "partial-line":
            s.sendall(b'{"jsonrpc":"2.0","meth')
        elif kind == "call-then-close":
            s.sendall(req("sleep", [30], i))  # abandoned: the server must cancel it
        elif kind == "ping-read-close":
            s.sendall(PING)
            assert s.recv(100).endswith(b"\n")
        s.close()
    after = settle(demo, before)
    stats = server_stats(path)["server"]
    record("2000 connect/close cycles", before, after, cpu_s=f"{cpu_seconds(demo.pid) - cpu_before:.2f}")
    assert_back(before, after)
    assert stats["connections"]["total"] >= 2000


def test_clients_that_vanish_with_big_answers_pending(demo: DemoProcess) -> None:
    path = demo.path
    before = quiet_figures(demo)
    big = req("echo", ["b" * 900_000], 1)
    for _ in range(100):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.settimeout(TIMEOUT)
        s.sendall(big)  # read whole: the server reads on while less than 1 MiB waits to be sent
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.send(big)  # as much as the buffers take: the server is now stuck writing to us
        s.close()
    after = settle(demo, before)
    record("100 clients leaving with 900 kB answers pending", before, after)
    assert_back(before, after)


def test_many_idle_connections_at_once(demo: DemoProcess) -> None:
    path = demo.path
    before = quiet_figures(demo)
    socks = []
    try:
        for _ in range(30):  # below the per-uid limit (32)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(path)
            socks.append(s)
        wait_for(lambda: figures(demo.pid)["fds"] >= before["fds"] + 30, "the server to accept all 30")
        assert ping(path)
    finally:
        for s in socks:
            s.close()
    after = settle(demo, before)
    record("30 idle connections opened and closed", before, after)
    assert_back(before, after)


def test_more_connections_than_file_descriptors(sock_dir: str) -> None:
    """RLIMIT_NOFILE 40: the connection limits shrink to fit, so accept never fails with EMFILE;
    the connections past them are refused with -32006, and everything comes back after."""
    path = os.path.join(sock_dir, "demo.sock")
    log = os.path.join(sock_dir, "log")

    def low_fd_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))

    with DemoProcess(path, log, preexec_fn=low_fd_limit) as demo:
        warm_up(path)
        before = quiet_figures(demo)
        cpu_before = cpu_seconds(demo.pid)
        socks = []
        try:
            for _ in range(60):
                c = LineClient(path)
                socks.append(c)
                c.send(PING)
            answers = [c.read_json() for c in socks]
            peak_fds = figures(demo.pid)["fds"]
        finally:
            for c in socks:
                c.close()
        served = answers.count(PONG)
        assert 0 < served < 60
        assert all(a["error"]["code"] == -32006 for a in answers if a != PONG)
        assert peak_fds < 40
        cpu_used = cpu_seconds(demo.pid) - cpu_before
        # Every connection is taken until the server sees the closes: only then can we ask it.
        wait_for(lambda: fd_count(demo.pid) <= before["fds"], "the server to close all 60")
        after = settle(demo, before)
        record(
            "60 connections, RLIMIT_NOFILE 40",
            before,
            after,
            served=served,
            peak_fds=peak_fds,
            cpu_s=f"{cpu_used:.2f}",
        )
        assert_back(before, after)
        assert "EMFILE" not in demo.log()
        assert demo.signal() == 0
