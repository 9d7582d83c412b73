"""jrpc_unix.Client, the blocking client, over real sockets: what only it does (threads, turns,
timeouts, reconnecting, tracing, waiting in ``connect``). What both clients promise alike is
test_contract.py's.

Three kinds of peer: the demo service as a subprocess, servers in this process
(``serve_in_thread``, for limits and hand-controlled handlers), and scripted peers (a stdlib
socket in a thread that answers exactly what a test needs). Nothing sleeps and hopes: tests wait
on events and on the server's own counters, with bounded waits (``helpers.wait_for``); every
timeout here runs out on a call that cannot be answered in time, never a race of two timers.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from helpers import TIMEOUT, DemoProcess, wait_for
from helpers.client import FullBacklog, ScriptedPeer, waiting_in_connect

from jrpc_unix import (
    Call,
    Client,
    ConnectError,
    ConnectionClosedError,
    Limits,
    Methods,
    ProtocolError,
    Response,
    RpcError,
    RpcTimeoutError,
    serve_in_thread,
)
from jrpc_unix._client.connect import connect_error


def controlled_methods() -> tuple[Methods, threading.Event, threading.Event]:
    """``hold`` blocks (in a worker thread) until released; ``entered`` says it is running."""
    entered, release = threading.Event(), threading.Event()
    methods = Methods()

    @methods.add
    def ping() -> str:
        return "pong"

    @methods.add(blocking=True)
    def hold() -> str:
        entered.set()
        release.wait(TIMEOUT)
        return "released"

    return methods, entered, release


# -- against the demo service ------------------------------------------------------------------


def test_the_demo_config_is_bounded(demo: DemoProcess) -> None:
    """Any caller may add keys, so their number and size are capped (issue 9, 16)."""
    with Client(demo.path) as client:
        for start in range(1, 1000, 100):  # "level" is the first of the 1,000 keys
            batch = [Call("config.set", f"k{i}", i) for i in range(start, min(start + 100, 1000))]
            assert client.batch(*batch) == [None] * len(batch)
        assert client.call("stats")["service"]["config_keys"] == 1000
        full = "config is full: at most 1000 keys (existing keys can still be changed)"
        with pytest.raises(RpcError, match=rf"^\[1\] {re.escape(full)}$") as info:
            client.call("config.set", "one-more", 1)
        assert info.value.data == {"limit": 1000}
        refused = Response.fail(full, data={"limit": 1000})  # the seed's send() sees a FAIL
        assert client.send("config.set", {"key": "k1000", "value": 1}) == refused
        assert client.call("config.set", "k999", "changed") == 999  # an existing key: still set
        assert client.call("config.get", "k999") == "changed"
        assert client.call("config.set", "level", "debug") == "info"
        for params, message in [
            (["x" * 257, 1], "config keys are at most 256 characters, not 257"),
            (["level", "x" * 16_383], "config values are at most 16384 bytes of JSON, not 16385"),
        ]:
            with pytest.raises(RpcError, match=rf"^\[1\] {message}$"):
                client.call("config.set", *params)
        with pytest.raises(RpcError, match=r"^\[-32602\] Invalid params$") as info:  # its type hint
            client.call("config.set", ["level"], 1)
        assert info.value.data == "key: expected a string, got array"
        assert client.call("config.set", "level", "x" * 16_382) == "debug"  # 16,384 bytes as JSON
        assert client.call("stats")["service"]["config_keys"] == 1000


def test_trace_sees_every_line(shared_demo: DemoProcess) -> None:
    seen: list[tuple[str, bytes]] = []
    with Client(shared_demo.path, trace=lambda way, line: seen.append((way, line))) as client:
        client.call("ping")
        client.notify("update")
    assert seen == [
        ("send", b'{"jsonrpc":"2.0","method":"ping","id":1}'),
        ("recv", b'{"jsonrpc":"2.0","result":"pong","id":1}'),
        ("send", b'{"jsonrpc":"2.0","method":"update"}'),
    ]


def test_importable_and_usable_without_trio(shared_demo: DemoProcess) -> None:
    code = (
        "import sys, jrpc_unix\n"
        f"with jrpc_unix.Client({shared_demo.path!r}) as c: print(c.call('ping'))\n"
        "print(sorted(m for m in ('trio', 'jsonrpcserver') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True
    )
    assert out.stdout.splitlines() == ["pong", "[]"]


# -- threads -----------------------------------------------------------------------------------


def test_one_client_shared_by_threads(shared_demo: DemoProcess) -> None:
    errors: list[BaseException] = []
    with Client(shared_demo.path) as client:

        def worker(n: int) -> None:
            try:
                for i in range(30):
                    assert client.call("echo", [n, i]) == [n, i]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
    assert errors == []


def test_waiting_for_another_threads_call_counts_against_the_timeout(sock_dir: str) -> None:
    methods, entered, release = controlled_methods()
    path = os.path.join(sock_dir, "s.sock")
    with serve_in_thread(path, methods), Client(path, timeout=0.2) as client:
        first: list[Any] = []
        holder = threading.Thread(target=lambda: first.append(Client.call(client, "hold")))
        client.timeout = TIMEOUT
        holder.start()
        assert entered.wait(TIMEOUT)
        client.timeout = 0.2
        with pytest.raises(
            RpcTimeoutError, match=r"timed out after 0\.2 s waiting for another thread's call"
        ):
            client.call("ping")
        release.set()
        holder.join(TIMEOUT)
        assert first == ["released"]
        assert client.call("ping") == "pong"


# -- reconnecting, timeouts, closing -----------------------------------------------------------


def test_reconnects_when_the_server_closed_an_idle_connection(sock_dir: str) -> None:
    methods, _, _ = controlled_methods()
    path = os.path.join(sock_dir, "s.sock")
    with serve_in_thread(path, methods, limits=Limits(idle_timeout=0.1)) as handle, Client(path) as client:
        stats = handle.server.stats
        assert client.call("ping") == "pong"
        wait_for(lambda: stats.connections_open == 0, "the server to close the idle connection")
        assert client.call("ping") == "pong"
        assert stats.connections_total == 2


def test_timeout_raises_and_the_next_call_reconnects(shared_demo: DemoProcess) -> None:
    with Client(shared_demo.path, timeout=0.2) as client:
        with pytest.raises(
            RpcTimeoutError, match=r"^/.*: timed out after 0\.2 s waiting for the answer to 'sleep'$"
        ):
            client.call("sleep", 30)
        with pytest.raises(TimeoutError):  # RpcTimeoutError is also the builtin
            client.call("sleep", 30)
        assert client.call("ping") == "pong"


def test_close_is_idempotent_and_shows_in_repr(shared_demo: DemoProcess) -> None:
    client = Client(shared_demo.path)
    assert repr(client) == f"<Client {shared_demo.path!r} idle>"
    assert client.call("ping") == "pong"
    assert repr(client) == f"<Client {shared_demo.path!r} connected>"
    client.close()
    client.close()
    with pytest.raises(ConnectionClosedError, match=r"^the client for .* is closed$"):
        client.call("ping")
    assert repr(client) == f"<Client {shared_demo.path!r} closed>"


# -- transport errors, each with its message ---------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EACCES, "permission denied (check the mode and group of the socket file and its directory)"),
        (
            errno.EAGAIN,
            "the server is not accepting connections: its accept queue is full (it is overloaded or stuck)",
        ),
        (errno.ELOOP, "Too many levels of symbolic links"),
    ],
)
def test_connect_error_messages(code: int, reason: str) -> None:
    exc = connect_error("/run/x.sock", OSError(code, os.strerror(code)))
    assert str(exc) == f"cannot connect to /run/x.sock: {reason}"


def answer_one_ping(listener: socket.socket) -> None:
    """Accept the next connection and answer its one call with "pong"."""
    conn, _ = listener.accept()
    with conn:
        conn.settimeout(TIMEOUT)
        request = json.loads(conn.makefile("rb").readline())
        conn.sendall(json.dumps({"jsonrpc": "2.0", "result": "pong", "id": request["id"]}).encode() + b"\n")


def ping_in_a_thread(path: str) -> tuple[threading.Thread, list[object]]:
    """A thread calling ``ping`` with a fresh Client; the list gets its result or exception."""
    outcome: list[object] = []

    def call() -> None:
        try:
            with Client(path, timeout=TIMEOUT) as client:
                outcome.append(client.call("ping"))
        except Exception as exc:  # reported by the caller's assertions
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, outcome


def test_a_full_accept_queue_is_waited_out_in_connect(sock_path: str) -> None:
    """The kernel keeps the client waiting in connect until the server accepts one (issue 9, 13)."""
    with FullBacklog(sock_path) as backlog:
        thread, outcome = ping_in_a_thread(sock_path)
        wait_for(lambda: not thread.is_alive() or waiting_in_connect(thread), "the client to wait in connect")
        assert thread.is_alive(), outcome
        backlog.free_one()
        answer_one_ping(backlog.listener)
        thread.join(TIMEOUT)
    assert outcome == ["pong"]


def test_a_signal_does_not_end_the_wait_for_room(sock_path: str) -> None:
    """A signal handler that returns interrupts connect(2); CPython then reports the socket
    connected when it is not. The client notices and keeps waiting."""
    signalled = threading.Event()
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: signalled.set())
    try:
        with FullBacklog(sock_path) as backlog:
            thread, outcome = ping_in_a_thread(sock_path)
            wait_for(lambda: not thread.is_alive() or waiting_in_connect(thread), "the client to wait")
            signal.pthread_kill(thread.ident or 0, signal.SIGUSR1)
            wait_for(signalled.is_set, "the signal handler to run")
            wait_for(lambda: not thread.is_alive() or waiting_in_connect(thread), "the client to wait again")
            assert thread.is_alive(), outcome
            backlog.free_one()
            answer_one_ping(backlog.listener)
            thread.join(TIMEOUT)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert outcome == ["pong"]


def test_a_full_accept_queue_that_stays_full_is_a_connect_error(sock_path: str) -> None:
    with FullBacklog(sock_path) as backlog, Client(sock_path, timeout=0.3) as client:
        start = time.monotonic()
        message = r": the server is not accepting connections: its accept queue stayed full for 0\.\d s "
        with pytest.raises(ConnectError, match=message + r"\(it is overloaded or stuck\)$"):
            client.call("ping")
        assert time.monotonic() - start >= 0.3
        backlog.free_one()  # the client is not broken: the next call connects
        threading.Thread(target=answer_one_ping, args=(backlog.listener,), daemon=True).start()
        assert client.call("ping") == "pong"


def test_after_garbage_the_next_call_reconnects(sock_path: str) -> None:
    def script(peer: ScriptedPeer, conn: socket.socket) -> None:
        request = json.loads(peer.readline(conn))
        if len(peer.received) == 1:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        else:
            conn.sendall(json.dumps({"jsonrpc": "2.0", "result": "ok", "id": request["id"]}).encode() + b"\n")

    with ScriptedPeer(sock_path, script, connections=2), Client(sock_path) as client:
        with pytest.raises(ProtocolError, match=r"^the server sent a line that is not JSON"):
            client.call("ping")
        assert client.call("ping") == "ok"


# -- notifications from the server (subscriptions) ---------------------------------------------


def test_wait_notification_is_bounded_by_its_timeout(demo: DemoProcess) -> None:
    with Client(demo.path) as client:
        progress = client.call("rpc.subscribe", topic="progress")["subscription"]
        assert client.call("rpc.subscribe", topic="config")["subscription"] != progress
        assert client.call("work", 3, 0.001) == {"steps": 3}  # its reports arrive before its answer
        reports = [client.wait_notification(timeout=0) for _ in range(3)]  # kept: no wait needed
        assert [n.params["data"]["done"] for n in reports] == [1, 2, 3]
        with pytest.raises(RpcTimeoutError, match=r"timed out after 0\.05 s waiting for a notification$"):
            client.wait_notification(timeout=0.05)
        client.notify("config.set", "level", "warning")  # the subscription survived the timeout
        assert client.wait_notification().params["data"]["value"] == "warning"


def test_no_connection_no_notification(shared_demo: DemoProcess) -> None:
    with (
        Client(shared_demo.path) as client,
        pytest.raises(ConnectionClosedError, match=r": not connected, so no"),
    ):
        client.wait_notification()


def test_progress_survives_a_restarted_server(sock_path: str) -> None:
    """The connection's progress subscription dies with it: after the server restarted, the next
    call with ``progress`` subscribes again on the new connection before it is sent."""
    from jrpc_unix.demo import methods

    with Client(sock_path) as client:
        seen: list[Any] = []
        for _ in range(2):
            with serve_in_thread(sock_path, methods):
                assert client.call("work", 2, 0, progress=lambda *r: seen.append(r)) == {"steps": 2}
            assert seen == [(1, 2, "step 1 of 2"), (2, 2, "step 2 of 2")]
            seen.clear()
