"""jrpc_unix.Client, the blocking client, over real sockets.

Three kinds of peer: the demo service as a subprocess, servers in this process
(``serve_in_thread``, for limits and hand-controlled handlers), and scripted peers (a stdlib
socket in a thread that answers exactly what a test needs: garbage, a close mid-call). Nothing
sleeps and hopes: tests wait on events and on the server's own counters, with bounded waits.
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
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from helpers import TIMEOUT, DemoProcess
from helpers.client import FullBacklog, ReportWatch, waiting_in_connect

from jrpc_unix import (
    Call,
    Client,
    ConnectError,
    ConnectionClosedError,
    Limits,
    Methods,
    Notify,
    Policy,
    ProtocolError,
    Response,
    RpcError,
    RpcTimeoutError,
    Status,
    serve_in_thread,
)
from jrpc_unix._client.connect import connect_error
from jrpc_unix._wire.conversation import Notification


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll a real condition, bounded; fails loudly instead of hanging."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


# -- peers -------------------------------------------------------------------------------------


class ScriptedPeer:
    """A server on a real socket that runs ``script(conn)`` for each connection it accepts."""

    def __init__(self, path: str, script: Callable[[socket.socket], None], connections: int = 1) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(8)
        self.sock.settimeout(TIMEOUT)
        self.received: list[bytes] = []
        self._script = script
        self._thread = threading.Thread(target=self._run, args=(connections,), daemon=True)
        self._thread.start()

    def _run(self, connections: int) -> None:
        for _ in range(connections):
            conn, _ = self.sock.accept()
            with conn:
                conn.settimeout(TIMEOUT)
                self._script(conn)

    def readline(self, conn: socket.socket) -> bytes:
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(1)
            if not chunk:
                break
            data += chunk
        self.received.append(data)
        return data

    def close(self) -> None:
        self._thread.join(TIMEOUT)
        self.sock.close()


@pytest.fixture
def scripted(sock_path: str) -> Iterator[Callable[..., ScriptedPeer]]:
    peers: list[ScriptedPeer] = []

    def start(script: Callable[[ScriptedPeer, socket.socket], None], connections: int = 1) -> ScriptedPeer:
        peer: ScriptedPeer
        peer = ScriptedPeer(sock_path, lambda conn: script(peer, conn), connections)
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.close()


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


def test_call_returns_results_positional_and_named(shared_demo: DemoProcess) -> None:
    with Client(shared_demo.path) as client:
        assert client.call("ping") == "pong"
        assert client.call("subtract", 42, 23) == 19
        assert client.call("subtract", minuend=42, subtrahend=23) == 19
        assert client.call("echo", {"nested": [1, 2.5, None, "☃", 2**70]}) == {
            "nested": [1, 2.5, None, "☃", 2**70]
        }
        assert client.call("sum") == 0


def test_large_message_round_trips(shared_demo: DemoProcess) -> None:
    text = "x" * 900_000
    with Client(shared_demo.path) as client:
        assert client.call("echo", text) == text


def test_rpc_errors_carry_code_message_data(shared_demo: DemoProcess) -> None:
    with Client(shared_demo.path) as client:
        with pytest.raises(RpcError, match=r"^\[-32601\] Method not found$") as info:
            client.call("no.such.method")
        assert info.value.data == "no.such.method"
        with pytest.raises(RpcError, match=r"^\[-32602\] Invalid params$"):
            client.call("subtract", 1)
        with pytest.raises(RpcError, match=r"^\[1\] boom$") as info:
            client.call("fail", "boom")
        assert (info.value.code, info.value.message, info.value.data) == (1, "boom", None)
        with pytest.raises(RpcError, match=r"^\[-32603\] Internal error$") as info:
            client.call("crash")
        assert set(info.value.data) == {"error_id"}
        assert client.call("ping") == "pong", "errors leave the connection usable"


def test_mixing_positional_and_named_params_is_refused(shared_demo: DemoProcess) -> None:
    with Client(shared_demo.path) as client, pytest.raises(TypeError, match="either positional or named"):
        client.call("subtract", 1, subtrahend=2)


def test_notifications_apply_in_order_before_later_calls(demo: DemoProcess) -> None:
    with Client(demo.path) as client:
        for i in range(20):
            assert client.notify("config.set", key="n", value=i) is None
        assert client.call("config.get", key="n") == 19


def test_batch_results_in_call_order_with_errors_in_place(shared_demo: DemoProcess) -> None:
    with Client(shared_demo.path) as client:
        results = client.batch(
            Call("subtract", 42, 23),
            Notify("notify_hello", 7),
            Call("nope"),
            Call("sleep", 0.05),
            Call("get_data"),
        )
    assert results[0] == 19
    assert isinstance(results[1], RpcError)
    assert results[1].code == -32601
    assert results[2:] == [0.05, ["hello", 5]]


def test_batch_of_notifications_returns_empty_list(demo: DemoProcess) -> None:
    with Client(demo.path) as client:
        assert client.batch(Notify("config.set", "k", 1), Notify("config.set", "k", 2)) == []
        assert client.call("config.get", "k") == 2


def test_send_is_the_go_originals_send(demo: DemoProcess) -> None:
    with Client(demo.path) as client:
        assert client.send("config.set", {"key": "level", "value": "debug"}, respond=False) is None
        assert client.send("config.get", {"key": "level"}) == Response(Status.OK, "debug")
        assert client.send("subtract", [3, 1]) == Response.ok(2)
        assert client.send("ping") == Response.ok("pong")
        failed = client.send("config.get", {"key": "colour"})
        assert failed == Response.fail("unknown config key 'colour'", data={"known": ["level"]})
        with pytest.raises(RpcError, match=r"^\[-32601\] Method not found$"):
            client.send("nope", {})
        with pytest.raises(TypeError, match="send\\(\\) args must be a dict, list, tuple or None, not str"):
            client.send("echo", "text")


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
            ([["level"], 1], "config keys are strings, not list"),
        ]:
            with pytest.raises(RpcError, match=rf"^\[1\] {message}$"):
                client.call("config.set", *params)
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


def test_closed_client_refuses_calls(shared_demo: DemoProcess) -> None:
    client = Client(shared_demo.path)
    assert client.call("ping") == "pong"
    client.close()
    client.close()
    with pytest.raises(ConnectionClosedError, match=r"^the client for .* is closed$"):
        client.call("ping")
    assert "closed" in repr(client)


# -- transport errors, each with its message ---------------------------------------------------


def test_missing_socket_file(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "nothing.sock")
    with pytest.raises(
        ConnectError,
        match=r"^cannot connect to .*/nothing\.sock: no such socket file \(is the server running\?\)$",
    ):
        Client(path).call("ping")


def test_stale_socket_file_is_refused(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "stale.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays; nobody listens
    with pytest.raises(
        ConnectError, match=r"connection refused \(a stale socket file: no server is listening on it\)$"
    ):
        Client(path).call("ping")


def test_not_a_socket(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "file")
    open(path, "w").close()
    with pytest.raises(ConnectError, match=r"^cannot connect to .*/file: it is not a socket$"):
        Client(path).call("ping")
    with pytest.raises(ConnectError, match=r"a component of the path is not a directory$"):
        Client(os.path.join(path, "x.sock")).call("ping")


def test_file_name_too_long(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "n" * 120)
    with pytest.raises(
        ConnectError,
        match=r"the address is 1\d\d bytes long; the kernel allows at most 107 \(use a shorter file name\)$",
    ):
        Client(path).call("ping")


def test_long_directory_path_still_connects(sock_dir: str) -> None:
    deep = os.path.join(sock_dir, *["d" * 40] * 3)
    os.makedirs(deep)
    path = os.path.join(deep, "s.sock")
    assert len(path) > 107
    methods, _, _ = controlled_methods()
    with serve_in_thread(path, methods), Client(path) as client:
        assert client.call("ping") == "pong"


def test_abstract_address() -> None:
    name = f"@jrpc-unix-test-{os.getpid()}"
    methods, _, _ = controlled_methods()
    with serve_in_thread(name, methods, policy=Policy()), Client(name) as client:
        assert client.call("ping") == "pong"
    with pytest.raises(ConnectError, match=r"^cannot connect to @jrpc-unix-test-\d+: connection refused"):
        Client(name).call("ping")


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


def test_a_full_accept_queue_is_waited_out(sock_path: str) -> None:
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


def test_a_full_accept_queue_times_out_with_a_connect_error(sock_path: str) -> None:
    with FullBacklog(sock_path) as backlog, Client(sock_path, timeout=0.3) as client:
        start = time.monotonic()
        message = r": the server is not accepting connections: its accept queue stayed full for 0\.\d s "
        with pytest.raises(ConnectError, match=message + r"\(it is overloaded or stuck\)$"):
            client.call("ping")
        assert time.monotonic() - start >= 0.3
        backlog.free_one()  # the client is not broken: the next call connects
        threading.Thread(target=answer_one_ping, args=(backlog.listener,), daemon=True).start()
        assert client.call("ping") == "pong"


def test_server_closing_mid_call(scripted: Callable[..., ScriptedPeer], sock_path: str) -> None:
    scripted(lambda peer, conn: peer.readline(conn))  # read the request, then close
    with pytest.raises(
        ConnectionClosedError, match=r"^/.*: the server closed the connection before answering 'ping'$"
    ):
        Client(sock_path).call("ping")


def test_refusal_with_a_null_id_error_is_raised(
    scripted: Callable[..., ScriptedPeer], sock_path: str
) -> None:
    error = {"code": -32006, "message": "Server overloaded", "data": "too many connections"}
    line = json.dumps({"jsonrpc": "2.0", "error": error, "id": None}).encode() + b"\n"
    scripted(lambda peer, conn: conn.sendall(line))
    with Client(sock_path) as client, pytest.raises(RpcError, match=r"^\[-32006\] Server overloaded$"):
        client.call("ping")


def test_garbage_is_a_protocol_error_and_the_client_recovers(
    scripted: Callable[..., ScriptedPeer], sock_path: str
) -> None:
    def script(peer: ScriptedPeer, conn: socket.socket) -> None:
        request = json.loads(peer.readline(conn))
        if len(peer.received) == 1:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        else:
            conn.sendall(json.dumps({"jsonrpc": "2.0", "result": "ok", "id": request["id"]}).encode() + b"\n")

    scripted(script, connections=2)
    with Client(sock_path) as client:
        with pytest.raises(ProtocolError, match=r"^the server sent a line that is not JSON"):
            client.call("ping")
        assert client.call("ping") == "ok"


def test_late_answer_on_a_kept_connection_is_ignored(
    scripted: Callable[..., ScriptedPeer], sock_path: str
) -> None:
    def script(peer: ScriptedPeer, conn: socket.socket) -> None:
        request = json.loads(peer.readline(conn))
        stray = {"jsonrpc": "2.0", "result": "stray", "id": 999}
        answer = {"jsonrpc": "2.0", "result": "mine", "id": request["id"]}
        conn.sendall(json.dumps(stray).encode() + b"\n" + json.dumps(answer).encode() + b"\n")

    scripted(script)
    with Client(sock_path) as client:
        assert client.call("ping") == "mine"


def test_a_full_server_says_so(sock_dir: str) -> None:
    methods, _, _ = controlled_methods()
    path = os.path.join(sock_dir, "s.sock")
    limits = Limits(max_connections_per_uid=1)  # (root could still use the reserved connections)
    with serve_in_thread(path, methods, limits=limits), Client(path) as first:
        assert first.call("ping") == "pong"
        for _ in range(20):  # whether the refusal arrives before or after the request is written
            overloaded = pytest.raises(RpcError, match=r"^\[-32006\] Server overloaded$")
            with Client(path) as second, overloaded as info:
                second.call("ping")
            assert info.value.data == f"too many connections from uid {os.getuid()} (limit 1)"
        assert first.call("ping") == "pong"


# -- notifications from the server (subscriptions) ---------------------------------------------


def test_subscription_events_and_progress(demo: DemoProcess) -> None:
    with Client(demo.path) as client:
        config = client.call("rpc.subscribe", topic="config")["subscription"]
        progress = client.call("rpc.subscribe", topic="progress")["subscription"]
        assert client.call("config.set", "level", "debug") == "info"
        assert client.wait_notification() == Notification(
            "rpc.event",
            {
                "subscription": config,
                "topic": "config",
                "data": {"key": "level", "value": "debug", "previous": "info"},
            },
        )
        assert client.call("work", 3, 0.001) == {"steps": 3}  # its reports arrive before its answer
        reports = [client.wait_notification(timeout=0) for _ in range(3)]
        assert [(n.method, n.params["subscription"], n.params["data"]["done"]) for n in reports] == [
            ("rpc.event", progress, 1),
            ("rpc.event", progress, 2),
            ("rpc.event", progress, 3),
        ]
        with pytest.raises(RpcTimeoutError, match=r"timed out after 0\.05 s waiting for a notification$"):
            client.wait_notification(timeout=0.05)
        client.notify("config.set", "level", "warning")  # the subscription survived the timeout
        assert client.wait_notification().params["data"]["value"] == "warning"


def test_progress_reports_are_handed_on_and_forgotten(shared_demo: DemoProcess) -> None:
    """A call's reports are not kept once its callback had them (issue 9, 14: 200k reports took a
    client from 12 to 128 MiB): the core holds at most one read's worth."""
    with Client(shared_demo.path, timeout=TIMEOUT) as client:
        watch = ReportWatch(client)
        assert client.call("work", 10_000, 0, progress=watch) == {"steps": 10_000}
        watch.assert_forgotten(client, reads=1)


def test_no_connection_no_notification(shared_demo: DemoProcess) -> None:
    with (
        Client(shared_demo.path) as client,
        pytest.raises(ConnectionClosedError, match=r": not connected, so no"),
    ):
        client.wait_notification()


def test_bad_params_leave_the_connection_alone(sock_dir: str) -> None:
    methods, _, _ = controlled_methods()
    path = os.path.join(sock_dir, "s.sock")
    with serve_in_thread(path, methods) as handle, Client(path) as client:
        assert client.call("ping") == "pong"
        with pytest.raises(TypeError, match=r"^cannot send 'ping': its params are not JSON"):
            client.call("ping", object())
        with pytest.raises(TypeError, match="either positional or named"):
            client.notify("ping", 1, x=2)
        assert client.call("ping") == "pong"
        assert handle.server.stats.connections_total == 1
