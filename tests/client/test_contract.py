"""What both clients promise alike, held against each: ``jrpc_unix.Client`` and ``open_client``.

Every test runs once per driver (``blocking``, ``trio``) over the same real peers: the demo
service as a process, servers in the test's trio run (``helpers.serving``), and scripted peers that answer
exactly what a test needs. The blocking client's methods run in a worker thread so one async
test body reads the same for both (helpers.client.connected). What only one client does (threads
and timeouts; many tasks and cancellation) is in test_blocking_client.py / test_trio_client.py.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import DemoProcess, serving
from helpers.client import DRIVERS, ReportWatch, ScriptedPeer, connected

from jrpc_unix import (
    Call,
    ConnectError,
    ConnectionClosedError,
    Limits,
    Methods,
    Notify,
    Policy,
    ProtocolError,
    Response,
    RpcError,
    Status,
)

pytestmark = pytest.mark.parametrize("driver", DRIVERS)


def ping_methods() -> Methods:
    methods = Methods()

    @methods.add
    def ping() -> str:
        return "pong"

    return methods


@pytest.fixture
async def pinged(sock_path: str) -> AsyncIterator[str]:
    """A server in the test's trio run at a fresh path that answers ``ping``."""
    async with serving(sock_path, ping_methods()):
        yield sock_path


# -- calls, notifications, batches, send -------------------------------------------------------


async def test_call_returns_results_positional_and_named(driver: str, shared_demo: DemoProcess) -> None:
    async with connected(driver, shared_demo.path) as client:
        assert await client.call("ping") == "pong"
        assert await client.call("subtract", 42, 23) == 19
        assert await client.call("subtract", minuend=42, subtrahend=23) == 19
        value = {"nested": [1, 2.5, None, "☃", 2**70]}
        assert await client.call("echo", value) == value
        assert await client.call("sum") == 0
        text = "x" * 900_000
        assert await client.call("echo", text) == text


async def test_rpc_errors_carry_code_message_data(driver: str, shared_demo: DemoProcess) -> None:
    async with connected(driver, shared_demo.path) as client:
        with pytest.raises(RpcError, match=r"^\[-32601\] Method not found$") as info:
            await client.call("no.such.method")
        assert info.value.data == "no.such.method"
        with pytest.raises(RpcError, match=r"^\[-32602\] Invalid params$"):
            await client.call("subtract", 1)
        with pytest.raises(RpcError, match=r"^\[1\] boom$") as info:
            await client.call("fail", "boom")
        assert (info.value.code, info.value.message, info.value.data) == (1, "boom", None)
        with pytest.raises(RpcError, match=r"^\[-32603\] Internal error$") as info:
            await client.call("crash")
        assert set(info.value.data) == {"error_id"}
        assert await client.call("ping") == "pong", "errors leave the connection usable"


async def test_bad_params_are_refused_before_anything_is_sent(driver: str, sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    async with serving(path, ping_methods()) as server:
        async with connected(driver, path) as client:
            assert await client.call("ping") == "pong"
            with pytest.raises(TypeError, match=r"^cannot send 'ping': its params are not JSON"):
                await client.call("ping", object())
            with pytest.raises(TypeError, match="either positional or named"):
                await client.call("subtract", 1, subtrahend=2)
            with pytest.raises(TypeError, match="either positional or named"):
                await client.notify("ping", 1, x=2)
            assert await client.call("ping") == "pong"
        assert server.stats.connections_total == 1


async def test_notifications_apply_in_order_before_later_calls(driver: str, demo: DemoProcess) -> None:
    async with connected(driver, demo.path) as client:
        for i in range(20):
            assert await client.notify("config.set", key="n", value=i) is None
        assert await client.call("config.get", key="n") == 19


async def test_batch_results_in_call_order_with_errors_in_place(driver: str, demo: DemoProcess) -> None:
    async with connected(driver, demo.path) as client:
        results = await client.batch(
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
        assert await client.batch(Notify("config.set", "k", 1), Notify("config.set", "k", 2)) == []
        assert await client.call("config.get", "k") == 2


async def test_send_is_the_go_originals_send(driver: str, demo: DemoProcess) -> None:
    async with connected(driver, demo.path) as client:
        assert await client.send("config.set", {"key": "level", "value": "debug"}, respond=False) is None
        assert await client.send("config.get", {"key": "level"}) == Response(Status.OK, "debug")
        assert await client.send("subtract", [3, 1]) == Response.ok(2)
        assert await client.send("ping") == Response.ok("pong")
        failed = await client.send("config.get", {"key": "colour"})
        assert failed == Response.fail("unknown config key 'colour'", data={"known": ["level"]})
        with pytest.raises(RpcError, match=r"^\[-32601\] Method not found$"):
            await client.send("nope", {})
        with pytest.raises(TypeError, match=r"send\(\) args must be a dict, list, tuple or None, not str"):
            await client.send("echo", "text")


# -- what the server pushes --------------------------------------------------------------------


async def test_a_subscription_brings_its_events_until_closed(driver: str, demo: DemoProcess) -> None:
    async with connected(driver, demo.path) as client, client.subscription("config") as sub:
        assert sub.id.startswith("s")
        assert (sub.topic, sub.dropped, sub.closed) == ("config", 0, False)
        await client.notify("config.set", "level", "debug")
        await client.notify("config.set", "level", "warning")
        assert await sub.next() == {"key": "level", "value": "debug", "previous": "info"}
        assert (await sub.next())["value"] == "warning"
        await sub.close()
        assert sub.closed
        assert await sub.next() is None, "a closed subscription ends its iteration"
        await client.notify("config.set", "level", "error")
        assert await client.call("ping") == "pong"
        assert not client.client._conv.inbox, "no event came after the unsubscribe"


async def test_notifications_no_subscription_claimed_are_waited_for(driver: str, demo: DemoProcess) -> None:
    async with connected(driver, demo.path) as client:
        subscribed = await client.call("rpc.subscribe", topic="config")
        config = subscribed["subscription"]
        progress = (await client.call("rpc.subscribe", topic="progress"))["subscription"]
        assert await client.call("config.set", "level", "debug") == "info"
        note = await client.wait_notification()
        change = {"key": "level", "value": "debug", "previous": "info"}
        assert (note.method, note.params) == (
            "rpc.event",
            {
                "subscription": config,
                "topic": "config",
                "data": change,
                "epoch": note.params["epoch"],
                "seq": 1,
            },
        )
        assert await client.call("work", 3, 0.001) == {"steps": 3}  # its reports arrive before its answer
        reports = [await client.wait_notification() for _ in range(3)]
        assert [(n.method, n.params["subscription"], n.params["data"]["done"]) for n in reports] == [
            ("rpc.event", progress, 1),
            ("rpc.event", progress, 2),
            ("rpc.event", progress, 3),
        ]


async def test_progress_reports_reach_the_callback_in_order(driver: str, shared_demo: DemoProcess) -> None:
    seen: list[Any] = []
    async with connected(driver, shared_demo.path) as client:
        progress = lambda *report: seen.append(report)  # noqa: E731
        assert await client.call("work", 3, 0.001, progress=progress) == {"steps": 3}
        assert await client.call("work", 1, 0.001, progress=progress) == {"steps": 1}
    assert seen == [(i, 3, f"step {i} of 3") for i in (1, 2, 3)] + [(1, 1, "step 1 of 1")]


async def test_progress_reports_are_handed_on_and_forgotten(driver: str, shared_demo: DemoProcess) -> None:
    """A call's reports are not kept once its callback had them (issue 9, 14: 200k reports took a
    client from 12 to 128 MiB): the core holds at most a read's worth (the trio reader task may
    read once more before the caller's task runs the callback)."""
    async with connected(driver, shared_demo.path) as client:
        watch = ReportWatch(client.client)
        assert await client.call("work", 10_000, 0, progress=watch) == {"steps": 10_000}
        watch.assert_forgotten(client.client, reads=1 if driver == "blocking" else 2)


# -- closing, refusals, garbage ----------------------------------------------------------------


async def test_a_closed_client_refuses_calls(driver: str, pinged: str) -> None:
    async with connected(driver, pinged) as client:
        assert await client.call("ping") == "pong"
    with pytest.raises(ConnectionClosedError, match=r"^the client for .* is closed$"):
        await client.call("ping")


async def test_server_closing_mid_call(driver: str, sock_path: str) -> None:
    with ScriptedPeer(sock_path, lambda peer, conn: peer.readline(conn)):  # read the request, close
        async with connected(driver, sock_path) as client:
            closed = r"^/.*: the server closed the connection before answering 'ping'$"
            with pytest.raises(ConnectionClosedError, match=closed):
                await client.call("ping")


async def test_a_refusal_with_a_null_id_is_the_waiting_calls_error(driver: str, sock_path: str) -> None:
    error = {"code": -32006, "message": "Server overloaded", "data": "too many connections"}
    line = json.dumps({"jsonrpc": "2.0", "error": error, "id": None}).encode() + b"\n"

    def refuse(peer: ScriptedPeer, conn: socket.socket) -> None:
        peer.readline(conn)
        conn.sendall(line)

    with ScriptedPeer(sock_path, refuse):
        async with connected(driver, sock_path) as client:
            with pytest.raises(RpcError, match=r"^\[-32006\] Server overloaded$") as info:
                await client.call("ping")
    assert info.value.data == "too many connections"


async def test_a_full_server_says_so(driver: str, sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    limits = Limits(max_connections_per_uid=1)  # (root could still use the reserved connections)
    async with serving(path, ping_methods(), limits=limits), connected(driver, path) as first:
        assert await first.call("ping") == "pong"
        for _ in range(20):  # whether the refusal arrives before or after the request is written
            async with connected(driver, path) as second:
                with pytest.raises(RpcError, match=r"^\[-32006\] Server overloaded$") as info:
                    await second.call("ping")
            assert info.value.data == f"too many connections from uid {os.getuid()} (limit 1)"
        assert await first.call("ping") == "pong"


async def test_garbage_from_the_server_is_a_protocol_error(driver: str, sock_path: str) -> None:
    done = threading.Event()

    def garbage(peer: ScriptedPeer, conn: socket.socket) -> None:
        peer.readline(conn)
        conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        done.wait(10)

    with ScriptedPeer(sock_path, garbage):
        async with connected(driver, sock_path) as client:
            with pytest.raises(ProtocolError, match=r"^the server sent a line that is not JSON"):
                await client.call("ping")
        done.set()


async def test_a_late_answer_nobody_waits_for_is_dropped(driver: str, sock_path: str) -> None:
    def script(peer: ScriptedPeer, conn: socket.socket) -> None:
        request = json.loads(peer.readline(conn))
        stray = {"jsonrpc": "2.0", "result": "stray", "id": 999}
        answer = {"jsonrpc": "2.0", "result": "mine", "id": request["id"]}
        conn.sendall(json.dumps(stray).encode() + b"\n" + json.dumps(answer).encode() + b"\n")

    with ScriptedPeer(sock_path, script):
        async with connected(driver, sock_path) as client:
            assert await client.call("ping") == "mine"
            assert client.client._conv.dropped == 1


# -- addresses and why one cannot be reached ---------------------------------------------------


def _stale(path: str) -> str:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()  # the file stays; nobody listens
    return path


def _plain_file(path: str) -> str:
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    return path


UNREACHABLE = {
    "missing": (
        lambda path: path,
        r"^cannot connect to .*/s\.sock: no such socket file \(is the server running\?\)$",
    ),
    "stale": (_stale, r"connection refused \(a stale socket file: no server is listening on it\)$"),
    "not a socket": (_plain_file, r"^cannot connect to .*/s\.sock: it is not a socket$"),
    "not a directory": (
        lambda path: os.path.join(_plain_file(path), "x.sock"),
        r"a component of the path is not a directory$",
    ),
    "too long": (
        lambda path: path + "n" * 120,
        r"the address is 1\d\d bytes long; the kernel allows at most 107 \(use a shorter file name\)$",
    ),
}


@pytest.mark.parametrize("case", UNREACHABLE)
async def test_why_an_address_cannot_be_reached(driver: str, sock_path: str, case: str) -> None:
    make, message = UNREACHABLE[case]
    with pytest.raises(ConnectError, match=message):
        async with connected(driver, make(sock_path)) as client:
            await client.call("ping")


async def test_long_directory_path_still_connects(driver: str, sock_dir: str) -> None:
    deep = os.path.join(sock_dir, *["d" * 40] * 3)
    os.makedirs(deep)
    path = os.path.join(deep, "s.sock")
    assert len(path) > 107
    async with serving(path, ping_methods()), connected(driver, path) as client:
        assert await client.call("ping") == "pong"


async def test_abstract_address(driver: str) -> None:
    name = f"@jrpc-unix-test-{os.getpid()}-{driver}"
    async with serving(name, ping_methods(), policy=Policy()), connected(driver, name) as client:
        assert await client.call("ping") == "pong"
    with pytest.raises(ConnectError, match=r"^cannot connect to @jrpc-unix-test-\d+-\w+: connection refused"):
        async with connected(driver, name) as client:
            await client.call("ping")
