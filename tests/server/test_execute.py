"""How one call runs (jrpc_unix._server.execute): async handlers awaited, blocking ones in a
worker thread, quick ones inline on the event loop; the context each handler sees."""

from __future__ import annotations

import json
import os
import threading
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import (
    lines,
    notification,
    request,
    serving,
)
from helpers.server import connected

from jrpc_unix import (
    Methods,
    current_context,
)


async def test_async_handlers_are_awaited(sock_path: str) -> None:
    methods = Methods()

    @methods.add
    async def compute(x: int) -> int:
        await trio.lowlevel.checkpoint()
        return x * 2

    @methods.add
    async def fails() -> None:
        await trio.lowlevel.checkpoint()
        raise ValueError("nope")

    async with serving(sock_path, methods), connected(sock_path) as c:
        assert (await c.call("compute", [21]))["result"] == 42
        answer = await c.call("fails", rid=2)
        assert answer["error"]["code"] == -32603
        assert "nope" not in json.dumps(answer)


async def test_blocking_handlers_run_in_a_worker_thread_sync_ones_on_the_loop(sock_path: str) -> None:
    loop_thread = threading.get_ident()
    methods = Methods()

    @methods.add
    def on_loop() -> int:
        return threading.get_ident()

    @methods.add(blocking=True)
    def in_thread() -> int:
        return threading.get_ident()

    @methods.add
    async def awaited() -> int:
        return threading.get_ident()

    async with serving(sock_path, methods), connected(sock_path) as c:
        assert (await c.call("on_loop"))["result"] == loop_thread
        assert (await c.call("awaited"))["result"] == loop_thread
        worker = (await c.call("in_thread"))["result"]
    assert worker != loop_thread


@pytest.mark.parametrize("kind", ["sync", "async", "blocking"])
@pytest.mark.parametrize("fast_path", [True, False])
async def test_current_context_inside_handlers(sock_path: str, kind: str, fast_path: bool) -> None:
    seen: list[Any] = []
    methods = Methods()

    def describe() -> dict[str, Any]:
        ctx = current_context()
        seen.append(ctx)
        assert ctx.peer is not None
        return {
            "method": ctx.method,
            "id": ctx.request_id,
            "notification": ctx.is_notification,
            "peer": [ctx.peer.uid, ctx.peer.gid, ctx.peer.pid],
        }

    if kind == "sync":
        methods.add("who.am.i")(describe)
    elif kind == "blocking":
        methods.add("who.am.i", blocking=True)(describe)
    else:

        @methods.add("who.am.i")
        async def who() -> dict[str, Any]:
            await trio.lowlevel.checkpoint()
            return describe()

    async with serving(sock_path, methods, fast_path=fast_path) as server, connected(sock_path) as c:
        answer = await c.call("who.am.i", rid="ctx-1")
        await c.send(lines(notification("who.am.i")))
        await c.call("who.am.i", rid=2**70)
    assert answer["result"] == {
        "method": "who.am.i",
        "id": "ctx-1",
        "notification": False,
        "peer": [os.getuid(), os.getgid(), os.getpid()],
    }
    kinds = [(ctx.request_id, ctx.is_notification) for ctx in seen]
    assert kinds == [("ctx-1", False), (None, True), (2**70, False)]
    assert all(ctx.server is server for ctx in seen)


async def test_current_context_in_batch_members(sock_path: str) -> None:
    seen: list[Any] = []
    methods = Methods()

    @methods.add
    def who() -> str:
        ctx = current_context()
        seen.append((ctx.method, ctx.request_id, ctx.is_notification))
        return ctx.method

    @methods.add
    async def who_async() -> str:
        ctx = current_context()
        seen.append((ctx.method, ctx.request_id, ctx.is_notification))
        return ctx.method

    async with serving(sock_path, methods), connected(sock_path) as c:
        await c.send(lines([request("who", rid=1), notification("who"), request("who_async", rid=2)]))
        answer = await c.read_json()
    assert sorted(a["id"] for a in answer) == [1, 2]
    assert sorted(seen, key=repr) == sorted(
        [("who", 1, False), ("who", None, True), ("who_async", 2, False)], key=repr
    )


def test_current_context_outside_a_handler() -> None:
    with pytest.raises(LookupError, match="outside"):
        current_context()
