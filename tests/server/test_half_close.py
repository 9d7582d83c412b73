"""A client that half-closes and then goes away is noticed, even while nothing is written; the
idle timeout, on the virtual clock (``autojump_clock``), never closes a connection early."""

from __future__ import annotations

import json
import socket

import pytest
import trio
import trio.testing
from helpers import (
    TIMEOUT,
    LineClient,
    TrioLineClient,
    lines,
    notification,
    request,
    serving,
    until,
    wait_for,
)
from helpers.ops import served
from helpers.server import connected, sample_methods

from jrpc_unix import Limits, Methods

SUBSCRIBE_PROGRESS = b'{"jsonrpc":"2.0","method":"rpc.subscribe","params":{"topic":"progress"},"id":1}\n'


def _methods(cancelled: list[int]) -> Methods:
    m = Methods()

    @m.add
    async def hold() -> str:
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            cancelled.append(1)
            raise
        return "held"

    return m


@pytest.mark.parametrize("with_call", [False, True], ids=["subscription", "subscription+call"])
def test_half_close_then_close_frees_the_connection(sock_path: str, with_call: bool) -> None:
    cancelled: list[int] = []
    limits = Limits(idle_timeout=0.4, max_connections_per_uid=3)
    with served(sock_path, _methods(cancelled), limits=limits) as handle:
        stats = handle.server.stats
        for _ in range(5):  # more rounds than the per-uid limit: a leak would lock us out
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            s.connect(sock_path)
            call = b'{"jsonrpc":"2.0","method":"hold","id":2}\n' if with_call else b""
            s.sendall(SUBSCRIBE_PROGRESS + call)
            assert b'"subscription"' in s.recv(1000)
            if with_call:
                wait_for(lambda: stats.in_flight == 1, "the call to run")
            s.shutdown(socket.SHUT_WR)  # as socat does at stdin EOF
            s.close()
            wait_for(lambda: stats.connections_open == 0, "the connection to be freed", timeout=5)
            assert stats.subscriptions == 0
            assert stats.in_flight == 0
        assert len(cancelled) == (5 if with_call else 0)
        with LineClient(sock_path) as c:
            assert c.call("rpc.topics", rid=9)["id"] == 9


async def test_idle_timeout_never_closes_early(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with serving(sock_path, Methods(), limits=Limits(idle_timeout=1.0)) as server:
        c = await TrioLineClient.connect(sock_path)
        assert (await c.call("rpc.topics", rid=1))["id"] == 1
        start = trio.current_time()  # just after the server's last activity on the connection
        assert await c.read_to_eof() == b""
        assert 1.0 <= trio.current_time() - start <= 1.25  # after the timeout, never before
        await until(lambda: server.stats.connections_open == 0, "the server to count it closed")
        await c.aclose()


async def test_a_new_silent_connection_is_not_closed_early(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with serving(sock_path, Methods(), limits=Limits(idle_timeout=1.0)):
        start = trio.current_time()
        c = await TrioLineClient.connect(sock_path)
        assert await c.read_to_eof() == b""
        assert 1.0 <= trio.current_time() - start <= 1.25
        await c.aclose()


async def test_half_close_with_a_slow_call_pending_still_answers(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        await c.send(lines(request("nap", [0.5], "slow")))
        await c.send_eof()
        assert await c.read_json() == {"jsonrpc": "2.0", "result": 0.5, "id": "slow"}
        assert await c.read_to_eof() == b""  # then the server closes


async def test_half_close_answers_everything_received(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        reqs = [request("nap", [0.05 * (i % 3)], i) if i % 2 else request("echo", [i], i) for i in range(40)]
        await c.send(lines(*reqs) + b'[{"jsonrpc":"2.0","method":"nap","params":[0.1],"id":"b"}]\n')
        await c.send_eof()
        raw = await c.read_to_eof()
    answers = [json.loads(x) for x in raw.splitlines()]
    singles = sorted(a["id"] for a in answers if isinstance(a, dict))
    assert singles == list(range(40))
    assert [a for a in answers if isinstance(a, list)] == [[{"jsonrpc": "2.0", "result": 0.1, "id": "b"}]]


async def test_notification_runs_even_if_the_client_closes_at_once(sock_path: str) -> None:
    done = trio.Event()
    methods = Methods()

    @methods.add
    async def note() -> None:
        await trio.lowlevel.checkpoint()
        done.set()

    async with serving(sock_path, methods), connected(sock_path) as c:
        await c.send(lines(notification("note")))
        await c.aclose()
        with trio.fail_after(TIMEOUT):
            await done.wait()
