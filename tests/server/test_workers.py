"""Worker threads for ``blocking=True`` handlers (specs/protocol.md §7): bounded per server and
per connection, counted in ``rpc.stats``; a call that times out gives its slot back at once.

The handlers block on a threading Event the test opens. These tests keep the real clock: under
``autojump_clock`` virtual time would run ahead while a worker thread merely starts. The
handlers' short timeouts race nothing: each call simply waits for its answer.
"""

from __future__ import annotations

import threading
from typing import Any

import trio
from helpers import TIMEOUT, TrioLineClient, lines, request, serving, until

from jrpc_unix import Limits, Methods, Server


class Gate:
    def __init__(self) -> None:
        self.open = threading.Event()
        self.inside = 0
        self.lock = threading.Lock()
        m = self.methods = Methods()

        @m.add(blocking=True, timeout=0.05)
        def hang() -> None:
            with self.lock:
                self.inside += 1
            self.open.wait(TIMEOUT)
            with self.lock:
                self.inside -= 1

        @m.add(blocking=True)
        def quick() -> str:
            return "ok"

        @m.add(blocking=True)
        def wait() -> str:
            with self.lock:
                self.inside += 1
            self.open.wait(TIMEOUT)
            with self.lock:
                self.inside -= 1
            return "waited"


def threads(server: Server) -> dict[str, Any]:
    figures: dict[str, Any] = server.stats.snapshot()["server"]["threads"]
    return figures


async def test_timed_out_blocking_calls_do_not_starve_other_clients(sock_path: str) -> None:
    """One client, 40 calls that time out in a handler that never returns, then it leaves: once,
    that held every worker thread trio allows a run (40), and nobody's blocking call ran again."""
    gate = Gate()
    async with serving(sock_path, gate.methods) as server:
        greedy = await TrioLineClient.connect(sock_path)
        for i in range(40):
            assert (await greedy.call("hang", rid=i))["error"]["code"] == -32004
        await greedy.aclose()
        other = await TrioLineClient.connect(sock_path)
        with trio.fail_after(5):
            assert (await other.call("quick", rid=1))["result"] == "ok"
        await other.aclose()
        gate.open.set()
        await until(lambda: threads(server)["abandoned"] == 0, "the abandoned threads to return")


async def test_one_connection_cannot_take_every_worker_thread(sock_path: str) -> None:
    gate = Gate()
    limits = Limits(max_blocking_threads=4, max_blocking_per_connection=2, shutdown_grace=2.0)
    async with serving(sock_path, gate.methods, limits=limits) as server:
        greedy = await TrioLineClient.connect(sock_path)
        await greedy.send(lines(*(request("wait", rid=i) for i in range(5))))
        await until(lambda: threads(server) == {"busy": 2, "abandoned": 0, "waiting": 3}, "two to run")
        other = await TrioLineClient.connect(sock_path)
        assert await other.call("quick", rid="q") == {"jsonrpc": "2.0", "result": "ok", "id": "q"}
        gate.open.set()
        assert sorted([(await greedy.read_json())["id"] for _ in range(5)]) == [0, 1, 2, 3, 4]
        await until(lambda: threads(server) == {"busy": 0, "abandoned": 0, "waiting": 0}, "all done")
        await greedy.aclose()
        await other.aclose()


async def test_abandoned_threads_are_bounded_too(sock_path: str) -> None:
    """Past max_blocking_threads abandoned threads, a timed-out call keeps its slot: at most twice
    max_blocking_threads threads ever run, however many calls time out."""
    gate = Gate()
    limits = Limits(max_blocking_threads=2, max_blocking_per_connection=2, shutdown_grace=2.0)
    async with serving(sock_path, gate.methods, limits=limits) as server:
        c = await TrioLineClient.connect(sock_path)
        for i in range(10):
            assert (await c.call("hang", rid=i))["error"]["code"] == -32004
        assert threads(server) == {"busy": 0, "abandoned": 4, "waiting": 0}
        await until(lambda: gate.inside == 4, "the four threads to be inside")
        gate.open.set()
        await until(lambda: threads(server)["abandoned"] == 0, "the abandoned threads to return")
        assert (await c.call("quick", rid="q"))["result"] == "ok"
        await c.aclose()
