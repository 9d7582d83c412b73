"""``jrpc-unix watch``, ``stats`` and ``call``'s progress bar, as processes, as a person runs them.

A terminal is a real pseudo-terminal (``pty.openpty``); signals are real signals. Waits are for
facts the server reports (``rpc.stats``: the watcher has subscribed, the call is running), each
bounded by TIMEOUT.
"""

from __future__ import annotations

import json
import select
import signal
import subprocess
from collections.abc import Iterator
from typing import IO

import pytest
from helpers import ROOT, TIMEOUT, DemoProcess, server_stats, wait_for
from helpers.ops import served
from helpers.terminal import CLI, finish, on_terminal, spawn

from jrpc_unix import Client, Methods, ServerThread, current_context


def method_count(path: str, method: str, kind: str = "calls") -> int:
    entry = server_stats(path)["methods"].get(method, {})
    return int(entry.get(kind, 0))


def subscriptions(path: str) -> int:
    return int(server_stats(path)["server"]["subscriptions"])


def readline(stream: IO[bytes]) -> bytes:
    """One line from a child's stdout pipe, or fail after TIMEOUT."""
    ready, _, _ = select.select([stream], [], [], TIMEOUT)
    assert ready, "no output in time"
    return stream.readline()


# -- watch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_watch_prints_events_until_interrupted_then_unsubscribes(
    demo: DemoProcess, signum: int, code: int
) -> None:
    watcher = spawn("watch", demo.path, "config")
    try:
        wait_for(lambda: subscriptions(demo.path) == 1, "the watcher to subscribe")
        with Client(demo.path, timeout=TIMEOUT) as client:
            client.notify("config.set", "level", "debug")
            assert watcher.stdout is not None
            assert readline(watcher.stdout) == b'{"key":"level","value":"debug","previous":"info"}\n'
            client.notify("config.set", "level", "warning")
            assert json.loads(readline(watcher.stdout))["value"] == "warning"
        watcher.send_signal(signum)
    finally:
        returncode, _, err = finish(watcher)
    assert (returncode, err) == (code, b"")
    wait_for(lambda: subscriptions(demo.path) == 0, "the subscription to end")
    assert method_count(demo.path, "rpc.unsubscribe", "notifications") == 1, "it unsubscribed itself"


def test_watch_count_and_pretty(demo: DemoProcess) -> None:
    watcher = spawn("watch", demo.path, "stats", "interval=0.05", "--count", "2", "--pretty")
    code, out, err = finish(watcher)
    assert (code, err) == (0, b"")
    assert out.startswith(b'{\n  "server": {\n')
    assert out.count(b'\n  "server": {\n') == 2


@pytest.fixture
def bursting(sock_path: str) -> Iterator[ServerThread]:
    methods = Methods()
    methods.add_topic("t", "test events")

    @methods.add
    def burst(n: int) -> int:
        server = current_context().server
        for i in range(n):
            server.publish("t", i)
        return n

    with served(sock_path, methods) as handle:
        yield handle


def test_watch_says_how_many_events_were_dropped(bursting: ServerThread, sock_path: str) -> None:
    watcher = spawn("watch", sock_path, "t", "queue_size=2", "--count", "2")
    try:
        wait_for(lambda: subscriptions(sock_path) == 1, "the watcher to subscribe")
        with Client(sock_path, timeout=TIMEOUT) as client:
            assert client.call("burst", 10) == 10  # one step: its queue of 2 keeps 8 and 9
    finally:
        code, out, err = finish(watcher)
    assert (code, out, err) == (0, b"8\n9\n", b"jrpc-unix: 8 events dropped (reading too slowly)\n")


def test_watch_into_a_closed_pipe_is_not_an_error(bursting: ServerThread, sock_path: str) -> None:
    watcher = spawn("watch", sock_path, "t")
    try:
        wait_for(lambda: subscriptions(sock_path) == 1, "the watcher to subscribe")
        with Client(sock_path, timeout=TIMEOUT) as client:
            client.call("burst", 1)
            assert watcher.stdout is not None
            assert readline(watcher.stdout) == b"0\n"
            watcher.stdout.close()  # like `| head -1`
            client.call("burst", 1)
        assert watcher.wait(TIMEOUT) == 0
        assert watcher.stderr is not None
        assert watcher.stderr.read() == b""
    finally:
        finish(watcher)
    wait_for(lambda: subscriptions(sock_path) == 0, "the subscription to end")


def test_watch_ends_when_the_server_stops(demo: DemoProcess) -> None:
    watcher = spawn("watch", demo.path, "config")
    try:
        wait_for(lambda: subscriptions(demo.path) == 1, "the watcher to subscribe")
        assert demo.terminate() == 0
    finally:
        code, out, err = finish(watcher)
    assert (code, out) == (3, b"")
    assert err.startswith(b"jrpc-unix: ")
    assert err.endswith(b": the server closed the connection before an event of 'config' came\n")


# -- stats ---------------------------------------------------------------------------------------


def test_stats_is_a_table_on_a_terminal_and_json_in_a_pipe(shared_demo: DemoProcess) -> None:
    path = shared_demo.path
    with Client(path, timeout=TIMEOUT) as client:
        client.call("ping")
    code, shown, err = on_terminal("stats", path, stdout=True)
    assert (code, err) == (0, b"")
    text = shown.decode()
    lines = text.splitlines()
    assert lines[0].startswith("uptime ")
    assert lines[1].startswith("connections ")
    assert " open, " in lines[1]
    header = next(line for line in lines if line.startswith("method "))
    assert header.split() == ["method", "calls", "notifs", "errors", "mean", "us", "p50", "us", "p99", "us"]
    ping = next(line for line in lines if line.startswith("ping "))
    assert int(ping.split()[1]) >= 1

    piped = subprocess.run([*CLI, "stats", path], capture_output=True, timeout=TIMEOUT, cwd=str(ROOT))
    assert (piped.returncode, piped.stderr) == (0, b"")
    assert piped.stdout.count(b"\n") == 1
    assert "server" in json.loads(piped.stdout)

    forced = subprocess.run(
        [*CLI, "stats", path, "--table"], capture_output=True, timeout=TIMEOUT, cwd=str(ROOT)
    )
    assert forced.stdout.startswith(b"uptime ")
    code, shown, _ = on_terminal("stats", path, "--json", stdout=True)
    assert code == 0
    assert shown.startswith(b'{\n  "server": {\n')


# -- call's progress bar -----------------------------------------------------------------------


def test_call_draws_progress_on_a_terminal(demo: DemoProcess) -> None:
    code, shown, out = on_terminal("call", demo.path, "work", "steps=3", "delay=0.01", stderr=True)
    assert (code, out) == (0, b'{"steps":3}\n')
    assert b"\r[#######.............]   33%  1/3  step 1 of 3\x1b[K" in shown
    assert b"\r[####################]  100%  3/3  step 3 of 3\x1b[K" in shown
    assert shown.endswith(b"\r\x1b[K"), "the bar is erased before the result"
    assert method_count(demo.path, "rpc.subscribe") == 1


def test_call_draws_nothing_when_stderr_is_not_a_terminal(demo: DemoProcess) -> None:
    proc = subprocess.run(
        [*CLI, "call", demo.path, "work", "steps=3", "delay=0.01"],
        capture_output=True,
        timeout=TIMEOUT,
        cwd=str(ROOT),
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b'{"steps":3}\n', b"")
    assert method_count(demo.path, "rpc.subscribe") == 0, "not even subscribed"


def test_ctrl_c_during_a_call_exits_130_and_the_server_cancels_it(demo: DemoProcess) -> None:
    caller = spawn("call", demo.path, "work", "steps=200", "delay=0.05")
    try:
        wait_for(lambda: server_stats(demo.path)["server"]["in_flight"] == 1, "the call to run")
        caller.send_signal(signal.SIGINT)
    finally:
        code, out, err = finish(caller)
    assert (code, out, err) == (130, b"", b"")
    wait_for(
        lambda: server_stats(demo.path)["server"]["rejected_requests"].get("cancelled") == 1,
        "the server to cancel the call",
    )
    assert server_stats(demo.path)["server"]["in_flight"] == 0


def test_watch_since_replays_what_the_topic_kept(bursting: ServerThread, sock_path: str) -> None:
    with Client(sock_path, timeout=TIMEOUT) as client, client.subscribe("t") as sub:
        assert client.call("burst", 3) == 3
        assert [next(sub) for _ in range(3)] == [0, 1, 2]
        last, epoch = sub.seq, sub.epoch
    assert (last, epoch) == (3, bursting.server.epoch)
    with Client(sock_path, timeout=TIMEOUT) as client:
        assert client.call("burst", 2) == 2  # seq 4 and 5, while nobody watches
    code, out, err = finish(spawn("watch", sock_path, "t", "--since", "3", "--epoch", epoch, "--count", "2"))
    assert (code, out) == (0, b"0\n1\n")
    assert err == f"jrpc-unix: last seq 5; resume with --since 5 --epoch {epoch}\n".encode()
    code, out, err = finish(spawn("watch", sock_path, "t", "--since", "3", "--epoch", "0ld", "--count", "1"))
    assert (code, out) == (0, b"0\n")  # the oldest kept: seq 1, the first burst's 0
    assert err.startswith(b"jrpc-unix: the server restarted since; replaying what it kept\n")
    code, _, err = finish(spawn("watch", sock_path, "t", "--epoch", epoch))
    assert (code, err) == (2, b"jrpc-unix watch: --epoch goes with --since\n")
