"""The queue of waiting requests (specs/protocol.md §4): what waits keeps its order, the reader
reads on (rpc.cancel is seen), and reading pauses only once the queue is full.

In-process servers over real UNIX sockets; handlers wait on trio Events, and "the server is
stuck" is ``wait_all_tasks_blocked``, never a sleep.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio
import trio.testing
from helpers import TIMEOUT, TrioLineClient, lines, notification, request, serving

from jrpc_unix import Limits, Methods, Server


class Gated:
    def __init__(self) -> None:
        self.order: list[str] = []
        self.gates: dict[str, trio.Event] = {}
        m = self.methods = Methods()

        @m.add
        async def hold(name: str) -> str:
            self.order.append(f"start {name}")
            await self.gate(name).wait()
            self.order.append(f"end {name}")
            return name

        @m.add
        def note(name: str) -> None:
            self.order.append(f"note {name}")

        @m.add
        def ping() -> str:
            return "pong"

    def gate(self, name: str) -> trio.Event:
        return self.gates.setdefault(name, trio.Event())


def connection(server: Server) -> Any:
    (conn,) = server.connections.live
    return conn


async def test_reading_pauses_once_the_queue_is_full_and_resumes(sock_path: str) -> None:
    gated = Gated()
    limits = Limits(max_in_flight=1, max_queued_requests=8, shutdown_grace=2.0)
    n = 20_000  # ~1 MB of requests: far more than one read, the queue and the socket buffers hold
    payload = lines(*(request("hold", ["all"], i) for i in range(n)))
    sent = trio.Event()

    async def send(c: TrioLineClient) -> None:
        await c.send(payload)
        sent.set()

    async with serving(sock_path, gated.methods, limits=limits) as server, trio.open_nursery() as nursery:
        c = await TrioLineClient.connect(sock_path)
        nursery.start_soon(send, c)
        await trio.testing.wait_all_tasks_blocked()
        assert not sent.is_set(), "the server stopped reading"
        queue = connection(server).calls.schedule.queue
        per_read = 65536 // len(lines(request("hold", ["all"], 0))) + 1  # lines one read can hold
        assert 8 <= len(queue) < 8 + per_read  # the bound is checked between reads
        gated.gate("all").set()
        with trio.fail_after(TIMEOUT):
            answers = [json.loads(await c.readline())["id"] for _ in range(n)]
            await sent.wait()
        assert answers == list(range(n)), "one at a time: in order"
        await c.aclose()


async def test_serial_mode_answers_errors_in_their_turn(sock_path: str) -> None:
    gated = Gated()
    async with serving(sock_path, gated.methods, mode="serial") as server:
        c = await TrioLineClient.connect(sock_path)
        await c.send(
            lines(request("hold", ["a"], 1))
            + b"not json\n"
            + lines(request("nope", rid=2))
            + lines(request("ping", rid=3))
        )
        await trio.testing.wait_all_tasks_blocked()
        assert len(connection(server).calls.schedule.queue) == 4  # the running head and three more
        gated.gate("a").set()
        answers = [await c.read_json() for _ in range(4)]
        assert [a["id"] for a in answers] == [1, None, 2, 3]
        assert [a.get("error", {}).get("code") for a in answers] == [None, -32700, -32601, None]
        await c.aclose()


async def test_serial_mode_rpc_cancel_reaches_the_running_and_the_waiting(sock_path: str) -> None:
    gated = Gated()
    async with serving(sock_path, gated.methods, mode="serial"):
        c = await TrioLineClient.connect(sock_path)
        await c.send(lines(request("hold", ["a"], 1), request("hold", ["b"], 2), request("ping", rid=3)))
        await trio.testing.wait_all_tasks_blocked()
        await c.send(lines(notification("rpc.cancel", {"id": 2}), notification("rpc.cancel", {"id": 1})))
        answers = [await c.read_json() for _ in range(3)]
        codes = [(a["id"], a.get("error", {}).get("code")) for a in answers]
        assert codes == [(2, -32005), (1, -32005), (3, None)]
        assert gated.order == ["start a"], "b never ran"
        await c.aclose()


async def test_a_notification_behind_waiting_calls_runs_after_them(sock_path: str) -> None:
    """Barriers keep their meaning when they wait in the queue: the calls before it (running or
    waiting for a slot) finish first, the calls after it start after it."""
    gated = Gated()
    limits = Limits(max_in_flight=1, shutdown_grace=2.0)
    async with serving(sock_path, gated.methods, limits=limits):
        c = await TrioLineClient.connect(sock_path)
        await c.send(
            lines(
                request("hold", ["a"], 1),
                request("hold", ["b"], 2),
                notification("note", ["n"]),
                request("hold", ["c"], 3),
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        for name in "abc":
            gated.gate(name).set()
        assert sorted([(await c.read_json())["id"] for _ in range(3)]) == [1, 2, 3]
        assert gated.order == ["start a", "end a", "start b", "end b", "note n", "start c", "end c"]
        await c.aclose()


@pytest.mark.parametrize("where", ["waiting", "batch"])
async def test_stop_answers_what_waits_and_never_starts_it(sock_path: str, where: str) -> None:
    gated = Gated()
    limits = Limits(max_in_flight=1, shutdown_grace=2.0)
    async with serving(sock_path, gated.methods, limits=limits) as server:
        c = await TrioLineClient.connect(sock_path)
        waiting = [request("hold", ["b"], 2), request("hold", ["c"], 3)]
        await c.send(lines(request("hold", ["a"], 1), waiting if where == "batch" else waiting[0]))
        if where == "waiting":
            await c.send(lines(waiting[1]))
        await trio.testing.wait_all_tasks_blocked()
        server.stop()
        first = await c.read_json()  # the waiting ones, answered at once
        got = first if isinstance(first, list) else [first, await c.read_json()]
        assert sorted((a["id"], a["error"]["code"]) for a in got) == [(2, -32002), (3, -32002)]
        gated.gate("a").set()
        assert await c.read_json() == {"jsonrpc": "2.0", "result": "a", "id": 1}  # it ran to its end
        assert await c.read_to_eof() == b""
        await c.aclose()
    assert gated.order == ["start a", "end a"]
