"""Graceful stop (specs/protocol.md §9): Server.stop(), ServerThread.stop(), SIGTERM and SIGINT.

Stop accepting; let running calls finish up to ``shutdown_grace``; answer requests that arrive
meanwhile with -32002; cancel what still runs at the deadline; close every connection; remove the
socket file; idempotent; afterwards no spinning, no leaked threads or descriptors.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from helpers import (
    ROOT,
    TIMEOUT,
    DemoProcess,
    LineClient,
    ServerProcess,
    TrioLineClient,
    lines,
    request,
    serving,
    until,
    wait_for,
)
from helpers.ops import (
    PING,
    connectable,
    cpu_seconds,
    no_threads_but,
    ping,
    read_until_eof_or_error,
    req,
)
from helpers.server import connected, sample_methods

from jrpc_unix import Limits, Methods, Server, ServerThread, current_context, serve_in_thread

SHUTTING_DOWN = {"code": -32002, "message": "Server shutting down"}


class Work:
    """Methods whose progress the test can see; ``stubborn`` ignores every deadline but the last."""

    def __init__(self) -> None:
        self.started = 0
        self.finished = 0
        self.cancelled = 0
        m = self.methods = Methods()

        @m.add
        def ping() -> str:
            return "pong"

        @m.add
        async def sleep(seconds: float) -> float:
            self.started += 1
            try:
                await trio.sleep(seconds)
            except trio.Cancelled:
                self.cancelled += 1
                raise
            self.finished += 1
            return seconds

        @m.add
        async def stubborn() -> None:
            """Catches nothing, checks nothing: runs until someone cancels it."""
            self.started += 1
            try:
                await trio.sleep_forever()
            finally:
                self.cancelled += 1

        @m.add(blocking=True)
        def block(seconds: float) -> float:
            self.started += 1
            time.sleep(seconds)
            self.finished += 1
            return seconds

        self.gate = threading.Event()

        @m.add(blocking=True)
        def gated() -> str:
            self.started += 1
            self.gate.wait(TIMEOUT)
            self.finished += 1
            return "opened"

        @m.add
        def shutdown() -> str:
            current_context().server.stop()
            return "stopping"


def stop_in_background(handle: ServerThread) -> tuple[threading.Thread, list[float]]:
    took: list[float] = []

    def run() -> None:
        start = time.monotonic()
        handle.stop(timeout=TIMEOUT)
        took.append(time.monotonic() - start)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, took


def thread_baseline() -> set[int]:
    return {t.ident for t in threading.enumerate() if t.ident is not None}


def assert_idle_afterwards(threads_before: set[int]) -> None:
    """No thread of ours left, and the process does not burn CPU."""
    wait_for(lambda: not no_threads_but(threads_before), f"threads to end: {no_threads_but(threads_before)}")
    cpu = cpu_seconds(os.getpid())
    time.sleep(0.3)  # measuring a CPU rate needs an interval
    assert cpu_seconds(os.getpid()) - cpu < 0.1, "the process keeps spinning after stop"


# -- in-flight calls, late arrivals, new connections --------------------------------------------------------


def test_stop_lets_running_calls_finish_and_refuses_late_requests(sock_path: str) -> None:
    work = Work()
    threads_before = thread_baseline()
    fds_before = len(os.listdir("/proc/self/fd"))
    handle = serve_in_thread(sock_path, work.methods, limits=Limits(shutdown_grace=5))
    with LineClient(sock_path) as c:
        c.send(req("sleep", [0.5], 1))
        wait_for(lambda: handle.server.stats.in_flight == 1, "the call to run")
        stopper, took = stop_in_background(handle)
        wait_for(lambda: handle.server.stopping, "the server to begin stopping")
        c.send(req("ping", rid=2) + req("ping", notify=True))
        late = c.read_json()
        assert late == {"jsonrpc": "2.0", "id": 2, "error": SHUTTING_DOWN}
        # A new client during the grace period is not served.
        newcomer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        newcomer.settimeout(TIMEOUT)
        try:
            newcomer.connect(sock_path)
            newcomer.sendall(PING)
        except OSError:
            pass  # refused outright: fine
        assert c.read_json() == {"jsonrpc": "2.0", "result": 0.5, "id": 1}  # finished, answered
        assert read_until_eof_or_error(c) == b""  # then closed
        stopper.join(TIMEOUT)
        assert took, "stop did not return"
        assert took[0] < 3, "stop waited for the grace period although nothing ran"
        try:
            assert newcomer.recv(1000) == b""  # closed unanswered once the listener closed
        except OSError:
            pass  # reset, or never connected
        finally:
            newcomer.close()
    assert work.finished == 1
    assert work.cancelled == 0
    assert not handle.running
    assert not os.path.lexists(sock_path)
    assert not connectable(sock_path)
    assert handle.server.stats.rejected_requests["shutting_down"] == 2
    assert len(os.listdir("/proc/self/fd")) <= fds_before
    assert_idle_afterwards(threads_before)


def test_client_connecting_during_the_grace_is_refused_or_told_at_once(sock_path: str) -> None:
    work = Work()
    handle = serve_in_thread(sock_path, work.methods, limits=Limits(shutdown_grace=1.5))
    try:
        with LineClient(sock_path) as c:
            c.send(req("stubborn", rid=1))
            wait_for(lambda: work.started == 1, "the call to run")
            stopper, _ = stop_in_background(handle)
            wait_for(lambda: handle.server.stopping, "the server to begin stopping")
            newcomer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            newcomer.settimeout(1.0)
            try:
                try:
                    newcomer.connect(sock_path)
                    newcomer.sendall(PING)
                    answer = newcomer.recv(1000)  # (1 s at most)
                except (ConnectionRefusedError, FileNotFoundError, ConnectionResetError, BrokenPipeError):
                    # Refused at once: no file, nobody listening, or (connected in the moment
                    # before the file went) reset as the listener closes with it unaccepted.
                    return
                assert b'"code":-32002' in answer, answer
            finally:
                newcomer.close()
                stopper.join(TIMEOUT)
    finally:
        handle.stop(timeout=TIMEOUT)


async def test_idle_connections_do_not_delay_stop(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with serving(sock_path, Work().methods, limits=Limits(shutdown_grace=5)) as server:
        clients = [await TrioLineClient.connect(sock_path) for _ in range(5)]
        for c in clients:
            assert (await c.call("ping"))["result"] == "pong"
        start = trio.current_time()
        server.stop()
        for c in clients:
            assert await c.read_to_eof() == b""
            await c.aclose()
        await server.wait_stopped()
        assert trio.current_time() - start < 5, "stop waited out the grace for idle connections"


def test_handler_ignoring_the_deadline_is_cancelled_when_it_passes(sock_path: str) -> None:
    work = Work()
    threads_before = thread_baseline()
    handle = serve_in_thread(sock_path, work.methods, limits=Limits(shutdown_grace=0.5))
    with LineClient(sock_path) as c:
        c.send(req("stubborn", rid=1) + req("sleep", [60], 2))
        wait_for(lambda: work.started == 2, "both calls to run")
        start = time.monotonic()
        handle.stop(timeout=TIMEOUT)
        took = time.monotonic() - start
        rest = read_until_eof_or_error(c)
    assert 0.4 <= took < 3, took
    assert not handle.running
    assert work.cancelled == 2
    # Every call still gets its answer: -32002, the server is shutting down.
    answers = sorted((json.loads(line) for line in rest.splitlines()), key=lambda a: a["id"])
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(1, -32002), (2, -32002)]
    assert "the server is shutting down" in answers[0]["error"]["data"]
    assert not os.path.lexists(sock_path)
    assert_idle_afterwards(threads_before)


def test_blocking_handler_past_the_deadline_is_answered_then_waited_for(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Its call is answered -32002 at the deadline; the server then waits for its thread (up to
    thread_grace): the process would otherwise end it mid-way."""
    caplog.set_level(logging.INFO, logger="jrpc_unix.server")
    work = Work()
    threads_before = thread_baseline()
    limits = Limits(shutdown_grace=0.3, thread_grace=TIMEOUT)
    handle = serve_in_thread(sock_path, work.methods, limits=limits)
    with LineClient(sock_path) as c:
        c.send(req("gated", rid=1))
        wait_for(lambda: work.started == 1, "the blocking call to run")
        stopper, took = stop_in_background(handle)
        assert c.read_json() == {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {**SHUTTING_DOWN, "data": "gated was cancelled: the server is shutting down"},
        }
        assert read_until_eof_or_error(c) == b""
        wait_for(lambda: "waiting up to 10.0 s for 1 worker thread" in caplog.text, "the server to say so")
        assert handle.running, "the server waits for its worker thread"
        work.gate.set()
        stopper.join(TIMEOUT)
    assert took, "stop did not return"
    assert not handle.running
    assert work.finished == 1
    assert "worker threads done" in caplog.text
    assert_idle_afterwards(threads_before)


def test_a_worker_thread_past_the_thread_grace_is_left_behind(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    work = Work()
    handle = serve_in_thread(sock_path, work.methods, limits=Limits(shutdown_grace=0.1, thread_grace=0.2))
    try:
        with LineClient(sock_path) as c:
            c.send(req("gated", rid=1))
            wait_for(lambda: work.started == 1, "the blocking call to run")
            handle.stop(timeout=TIMEOUT)
            assert not handle.running
            assert c.read_json()["error"]["code"] == -32002
        assert "1 worker thread still running after 0.2 s; exiting without them" in caplog.text
        assert work.finished == 0
    finally:
        work.gate.set()
    wait_for(lambda: work.finished == 1, "the abandoned worker to return")


def test_stop_with_a_client_that_never_reads(sock_path: str) -> None:
    handle = serve_in_thread(sock_path, Work().methods, limits=Limits(shutdown_grace=0.5))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    sock.setblocking(False)
    try:
        data = b"".join(req("ping", rid=i) for i in range(100_000))
        sent = 0
        while True:  # fill every buffer: the server ends up blocked writing to us
            try:
                sent += sock.send(data[sent : sent + 65536])
            except BlockingIOError:
                if not select.select([], [sock], [], 0.3)[1]:
                    break
        start = time.monotonic()
        handle.stop(timeout=TIMEOUT)
        assert time.monotonic() - start < 3
        assert not handle.running
    finally:
        sock.close()
    assert not os.path.lexists(sock_path)


def test_stop_is_idempotent_and_the_context_manager_stops(sock_path: str) -> None:
    with serve_in_thread(sock_path, Work().methods) as handle:
        assert ping(sock_path)
    assert not handle.running
    handle.stop(timeout=TIMEOUT)
    handle.stop(timeout=TIMEOUT)
    assert not os.path.lexists(sock_path)


async def test_server_stop_twice_inside_trio(sock_path: str) -> None:
    server = Server(Work().methods, limits=Limits(shutdown_grace=1))
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, sock_path)
            client = await TrioLineClient.connect(sock_path)
            assert await client.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}
            server.stop()
            server.stop()
            assert await client.read_to_eof() == b""
            await client.aclose()
        server.stop()
    assert not await trio.Path(sock_path).exists()
    with pytest.raises(RuntimeError, match="serves once"):
        await server.serve(sock_path)


def test_a_handler_can_stop_its_server(sock_path: str) -> None:
    handle = serve_in_thread(sock_path, Work().methods)
    with LineClient(sock_path) as c:
        assert c.call("shutdown") == {"jsonrpc": "2.0", "result": "stopping", "id": 1}
        assert read_until_eof_or_error(c) == b""
    handle.join(TIMEOUT)
    assert not handle.running
    assert not os.path.lexists(sock_path)


def test_stop_before_any_client_and_restart_on_the_same_path(sock_path: str) -> None:
    for _ in range(3):
        handle = serve_in_thread(sock_path, Work().methods)
        handle.stop(timeout=TIMEOUT)
        assert not handle.running
        assert not os.path.lexists(sock_path)


# -- ServerThread.stop() at any moment ---------------------------------------------------------------------


def test_thread_stopped_before_start_never_serves(sock_path: str) -> None:
    handle = ServerThread(Server(Work().methods), sock_path)
    handle.stop(timeout=TIMEOUT)
    handle.start()  # returns at once: stopped already
    assert not handle.running
    assert not os.path.lexists(sock_path)
    handle.stop(timeout=TIMEOUT)
    assert not os.path.lexists(sock_path)


def test_thread_stopped_while_it_sets_up_ends_at_once(sock_path: str) -> None:
    """stop() once the thread runs but before the socket listens (held there by our own starters'
    lock, deterministically): the server ends as soon as it listens; nothing is left behind."""
    directory, name = os.path.split(sock_path)
    lock = os.open(os.path.join(directory, f".{name}.jrpc-lock"), os.O_RDONLY | os.O_CREAT, 0o600)
    handle = ServerThread(Server(Work().methods), sock_path)
    starter = threading.Thread(target=handle.start, daemon=True)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        starter.start()
        wait_for(lambda: handle._token is not None, "the server's event loop to run")
        stopper = threading.Thread(target=handle.stop, args=(TIMEOUT,), daemon=True)
        stopper.start()
        wait_for(lambda: handle.server.stopping, "the stop to reach the server")
    finally:
        os.close(lock)  # the setup goes on
    starter.join(TIMEOUT)
    stopper.join(TIMEOUT)
    assert not starter.is_alive()
    assert not stopper.is_alive()
    assert not handle.running
    assert not os.path.lexists(sock_path)
    assert os.listdir(directory) == []


def test_thread_stop_racing_start_always_ends_the_server(sock_dir: str) -> None:
    """start() and stop() released together from two threads, 40 times: whichever wins, both
    return, the thread ends and no socket file stays (before: stop could miss the server)."""
    for i in range(40):
        path = os.path.join(sock_dir, f"{i}.sock")
        handle = ServerThread(Server(Work().methods), path)
        go = threading.Barrier(2)

        def together(call: Any, go: threading.Barrier = go) -> None:
            go.wait(TIMEOUT)
            call()

        threads = [
            threading.Thread(target=together, args=(f,), daemon=True)
            for f in (handle.start, functools.partial(handle.stop, TIMEOUT))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        assert not any(t.is_alive() for t in threads), f"round {i}: start or stop hangs"
        handle.join(TIMEOUT)
        assert not handle.running, f"round {i}: the server runs on after stop()"
        assert not os.path.lexists(path)


@pytest.mark.parametrize("blocking", [False, True], ids=["on-the-event-loop", "in-a-worker-thread"])
def test_a_handler_can_stop_the_thread_it_runs_in(sock_path: str, blocking: bool) -> None:
    """stop() only asks there (waiting for the server's end would wait for the handler itself):
    the caller gets its answer at once, then the server ends."""
    handles: list[ServerThread] = []
    m = Methods()

    @m.add(blocking=blocking)
    def halt() -> str:
        handles[0].stop()
        return "halting"

    handles.append(ServerThread(Server(m, limits=Limits(shutdown_grace=TIMEOUT)), sock_path))
    handles[0].start()
    with LineClient(sock_path) as c:
        assert c.call("halt") == {"jsonrpc": "2.0", "result": "halting", "id": 1}
        assert read_until_eof_or_error(c) == b""
    handles[0].join(TIMEOUT)
    assert not handles[0].running
    assert not os.path.lexists(sock_path)


# -- signals: the demo service and the CLI ------------------------------------------------------------------


@pytest.mark.parametrize(
    "signum",
    [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT],
    ids=["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT"],
)
def test_demo_signal_stops_gracefully(sock_dir: str, signum: int) -> None:
    """SIGHUP and SIGQUIT too: their default action would kill the process and leave the file."""
    path = os.path.join(sock_dir, "demo.sock")
    log = os.path.join(sock_dir, "log")
    with DemoProcess(path, log) as demo:
        with LineClient(path) as c:
            c.send(req("sleep", [0.5], 1))
            wait_for(lambda: _in_flight(path) == 1, "the call to run")
            demo.proc.send_signal(signum)
            wait_for(
                lambda: f"{signal.Signals(signum).name} received; stopping" in demo.log(),
                "the server to take the signal",
            )
            c.send(req("ping", rid=2))
            assert c.read_json() == {"jsonrpc": "2.0", "id": 2, "error": SHUTTING_DOWN}
            assert c.read_json() == {"jsonrpc": "2.0", "result": 0.5, "id": 1}
            assert read_until_eof_or_error(c) == b""
        assert demo.proc.wait(timeout=TIMEOUT) == 0
        assert f"stopped accepting; removed {path}" in demo.log()
        assert "Traceback" not in demo.log()
    assert not os.path.lexists(path)


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGUSR2], ids=["SIGUSR1", "SIGUSR2"])
def test_demo_sigusr_logs_figures_and_serves_on(sock_dir: str, signum: int) -> None:
    """SIGUSR1/SIGUSR2 (whose default action kills) log one line of figures, and change nothing."""
    path = os.path.join(sock_dir, "demo.sock")
    with DemoProcess(path, os.path.join(sock_dir, "log")) as demo, LineClient(path) as c:
        assert c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}
        name = signal.Signals(signum).name

        def figure_lines() -> list[str]:
            return [x for x in demo.log().splitlines() if f"{name} received" in x]

        for n in (1, 2):  # (one at a time: signals pending together are delivered once)
            demo.proc.send_signal(signum)
            wait_for(lambda n=n: len(figure_lines()) == n, f"line {n} of figures")
        figures = json.loads(figure_lines()[-1].split(f"{name} received; figures: ", 1)[1])
        assert figures["connections"]["open"] == 1
        assert figures["calls"] >= 1
        assert demo.proc.poll() is None
        assert ping(path)
        c.send(req("ping", rid=2))
        assert c.read_json() == {"jsonrpc": "2.0", "result": "pong", "id": 2}
        assert demo.signal(signal.SIGTERM) == 0
    assert not os.path.lexists(path)


def _in_flight(path: str, method: str = "stats") -> int:
    with LineClient(path) as c:
        return int(c.call(method)["result"]["server"]["in_flight"])


def test_demo_sigterm_when_idle_exits_at_once(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "demo.sock")
    with DemoProcess(path, os.path.join(sock_dir, "log")) as demo:
        assert ping(path)
        idle_cpu = cpu_seconds(demo.pid)
        time.sleep(0.3)  # an idle server uses no CPU (no polling loop)
        assert cpu_seconds(demo.pid) - idle_cpu < 0.05
        start = time.monotonic()
        assert demo.signal(signal.SIGTERM) == 0
        assert time.monotonic() - start < 3
    assert not os.path.lexists(path)


def _cli_server(sock_dir: str, path: str, *options: str) -> ServerProcess:
    pytest.importorskip("jrpc_unix._cli.serve")
    log = os.path.join(sock_dir, "cli.log")
    return ServerProcess(
        [sys.executable, "-m", "jrpc_unix", "serve", "examples/demo_server.py:methods", path, *options],
        log,
        lambda: f"listening on {path}" in Path(log).read_text() and connectable(path),
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_signal_cancels_calls_past_the_grace(sock_dir: str, signum: int) -> None:
    path = os.path.join(sock_dir, "cli.sock")
    with _cli_server(sock_dir, path, "--shutdown-grace", "0.5") as server, LineClient(path) as c:
        c.send(req("sleep", [60], 1) + req("sleep", [0.1], 2))
        assert c.read_json() == {"jsonrpc": "2.0", "result": 0.1, "id": 2}
        start = time.monotonic()
        server.proc.send_signal(signum)
        assert server.proc.wait(timeout=TIMEOUT) == 0
        took = time.monotonic() - start
        rest = read_until_eof_or_error(c)
        assert 0.4 <= took < 4, took
        assert json.loads(rest)["error"]["code"] == -32002  # answered, not cut off
        assert "Traceback" not in server.log()
    assert not os.path.lexists(path)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_second_signal_during_grace_still_exits_cleanly(sock_dir: str, signum: int) -> None:
    path = os.path.join(sock_dir, "demo.sock")
    with DemoProcess(path, os.path.join(sock_dir, "log")) as demo, LineClient(path) as c:
        c.send(req("sleep", [0.6], 1))
        wait_for(lambda: _in_flight(path) == 1, "the call to run")
        demo.proc.send_signal(signum)
        wait_for(lambda: "received; stopping" in demo.log(), "the first signal to be taken")
        demo.proc.send_signal(signum)  # an impatient operator, or a supervisor repeating itself
        assert c.read_json() == {"jsonrpc": "2.0", "result": 0.6, "id": 1}  # still graceful
        code = demo.proc.wait(timeout=TIMEOUT)
        assert not os.path.lexists(path)
        assert "Traceback" not in demo.log()
        assert code == 0


def test_sigkill_leaves_a_file_that_is_then_replaced(sock_dir: str) -> None:
    """Not graceful at all: the file stays, and the next start replaces it (see test_listener)."""
    path = os.path.join(sock_dir, "demo.sock")
    first = subprocess.Popen(
        [sys.executable, str(ROOT / "examples" / "demo_server.py"), path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=str(ROOT),
    )
    try:
        wait_for(lambda: connectable(path), "the demo to listen")
        first.kill()
        first.wait(timeout=TIMEOUT)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=TIMEOUT)
    assert os.path.lexists(path)
    with DemoProcess(path, os.path.join(sock_dir, "log")) as second:
        assert ping(path)
        assert second.signal() == 0
    assert not os.path.lexists(path)


# -- every call received is answered; nothing starts after the grace -----------------------------


async def test_a_call_waiting_for_a_slot_is_answered_and_never_started_at_stop(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    work = Work()
    server = Server(work.methods, limits=Limits(max_in_flight=2, shutdown_grace=1.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, sock_path)
        client = await TrioLineClient.connect(sock_path)
        await client.send(req("stubborn", rid=1) + req("stubborn", rid=2) + req("stubborn", rid=3))
        await until(lambda: work.started == 2, "two calls to run")
        server.stop()
        rest = await client.read_to_eof()
        await client.aclose()
    answers = sorted((json.loads(line) for line in rest.splitlines()), key=lambda a: a["id"])
    assert [(a["id"], a["error"]["code"]) for a in answers] == [(1, -32002), (2, -32002), (3, -32002)]
    assert work.started == 2, "the waiting call never started"
    assert server.stats.rejected_requests["shutting_down"] == 3


WORKER_SCRIPT = """
import logging, pathlib, sys, time
from jrpc_unix import Limits, Methods, run
logging.basicConfig(level=logging.INFO, format="%(message)s")
path, done = sys.argv[1], sys.argv[2]
methods = Methods()

@methods.add(blocking=True)
def work(seconds: float) -> str:
    time.sleep(seconds)
    pathlib.Path(done).write_text("finished")
    return "finished"

run(path, methods, limits=Limits(shutdown_grace=0.2))
"""


def test_the_process_waits_for_its_worker_threads_before_it_exits(sock_dir: str) -> None:
    """A blocking handler past the grace is answered -32002 and abandoned, not killed at exit."""
    path = os.path.join(sock_dir, "w.sock")
    done = os.path.join(sock_dir, "done")
    log = os.path.join(sock_dir, "log")
    argv = [sys.executable, "-c", WORKER_SCRIPT, path, done]
    with ServerProcess(argv, log, lambda: connectable(path)) as server, LineClient(path) as c:
        c.send(req("work", [1.0], 1))
        wait_for(lambda: _in_flight(path, "rpc.stats") == 1, "the call to run")
        server.proc.send_signal(signal.SIGTERM)
        assert c.read_json() == {
            "jsonrpc": "2.0",
            "id": 1,
            "error": {**SHUTTING_DOWN, "data": "work was cancelled: the server is shutting down"},
        }
        assert server.proc.wait(timeout=TIMEOUT) == 0
        assert Path(done).read_text() == "finished", "the worker thread was killed mid-way"
        assert "waiting up to 10.0 s for 1 worker thread" in server.log()
        assert "worker threads done" in server.log()


async def test_stop_finishes_in_flight_refuses_late_arrivals_and_removes_the_file(sock_path: str) -> None:
    release = trio.Event()
    methods = sample_methods()

    @methods.add
    async def hold() -> str:
        await release.wait()
        return "held"

    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(
            Server(methods, limits=Limits(shutdown_grace=2.0)).serve, sock_path
        )
        async with connected(sock_path) as c:
            await c.send(lines(request("hold", rid="h")))
            await trio.testing.wait_all_tasks_blocked()
            server.stop()
            server.stop()  # idempotent
            answer = await c.call("ping", rid="late")
            assert answer["error"]["code"] == -32002
            assert answer["error"]["message"] == "Server shutting down"
            release.set()
            assert await c.read_json() == {"jsonrpc": "2.0", "result": "held", "id": "h"}
            assert await c.read_to_eof() == b""
    assert not await trio.Path(sock_path).exists()


async def test_stop_cancels_what_outlives_the_grace_period(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    methods = Methods()

    @methods.add
    async def forever() -> None:
        await trio.sleep_forever()

    limits = Limits(shutdown_grace=0.2)
    async with serving(sock_path, methods, limits=limits) as server, connected(sock_path) as c:
        await c.send(lines(request("forever", rid=1)))
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        server.stop()
        answer = json.loads(await c.read_to_eof())
        assert trio.current_time() - start == pytest.approx(0.2)  # the grace, then no longer
        assert answer["error"]["code"] == -32002
        assert answer["error"]["data"] == "forever was cancelled: the server is shutting down"
    assert not await trio.Path(sock_path).exists()


async def test_stop_closes_idle_connections_without_waiting_for_the_grace_period(sock_path: str) -> None:
    limits = Limits(shutdown_grace=3600)  # were idle connections waited for, fail_after would fire
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            server: Server = await nursery.start(Server(sample_methods(), limits=limits).serve, sock_path)
            async with connected(sock_path) as idle, connected(sock_path) as used:
                assert (await used.call("ping"))["result"] == "pong"
                server.stop()
                assert await idle.read_to_eof() == b""
                assert await used.read_to_eof() == b""
    assert not await trio.Path(sock_path).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_on_the_demo_finishes_in_flight_removes_socket_exits_0(demo: DemoProcess, signum: int) -> None:
    with LineClient(demo.path) as c:
        c.send(lines(request("sleep", [0.5], "slow"), request("ping", rid="p")))
        assert c.read_json() == {"jsonrpc": "2.0", "result": "pong", "id": "p"}  # sleep is running
        demo.proc.send_signal(signum)
        assert c.read_json() == {"jsonrpc": "2.0", "result": 0.5, "id": "slow"}
        assert c.read_to_eof() == b""
    assert demo.proc.wait(timeout=TIMEOUT) == 0  # a graceful exit, not death by the signal
    assert not os.path.exists(demo.path)
