"""The Server itself (jrpc_unix._server.server): it serves once, its options are checked, serving
ends cleanly when cancelled, other threads reach it through one hop onto its event loop, and
``run`` raises what stopped it rather than trio's exception groups (test_listener shows it).

The rest of the server has its own files, as the package has its own modules: lines to answers
(test_calls, test_fast_path), when calls start (test_schedule), how one runs (test_execute),
limits, stopping, the socket file (test_listener), serve_in_thread (test_thread).
"""

from __future__ import annotations

import functools
import os
import stat
import threading

import pytest
import trio
from helpers import TIMEOUT, LineClient
from helpers.ops import served
from helpers.server import connected, sample_methods

from jrpc_unix import Limits, Methods, Server, ServerSetupError, serve
from jrpc_unix._errors import sole_exception
from jrpc_unix._server.loop import EventLoop


def test_serial_mode_name_is_checked() -> None:
    with pytest.raises(ValueError, match="mode must be"):
        Server(Methods(), mode="parallel")  # type: ignore[arg-type]


async def test_cancelling_serve_removes_the_file(sock_path: str) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(Server(sample_methods()).serve, sock_path)
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)
        nursery.cancel_scope.cancel()
    assert not await trio.Path(sock_path).exists()


async def test_serve_starts_with_the_server_as_its_start_value(sock_path: str) -> None:
    """``nursery.start(serve, ...)`` returns once listening, with the Server to stop it by."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(functools.partial(serve, sock_path, sample_methods(), mode="serial"))
        assert isinstance(server, Server)
        assert server.serial
        async with connected(sock_path) as c:
            assert (await c.call("ping"))["result"] == "pong"
        server.stop()
    assert server.stopping


async def test_a_server_serves_once(sock_path: str) -> None:
    server = Server(sample_methods(), limits=Limits(shutdown_grace=2.0))
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve, sock_path)
        with pytest.raises(RuntimeError, match="serves once"):
            await server.serve(sock_path + "2")
        server.stop()


# -- the hop onto the event loop ----------------------------------------------------------------------


async def test_the_hop_runs_at_once_on_the_loop_and_waits_from_another_thread() -> None:
    loop = EventLoop()
    ran: list[tuple[str, int]] = []

    def note(where: str) -> None:
        ran.append((where, threading.get_ident()))

    loop.call(note, "before the loop is entered")  # no loop yet: right here
    loop.enter()
    loop.call(note, "on the loop")
    await trio.to_thread.run_sync(loop.call, note, "from a thread")  # returns once it ran
    assert [where for where, _ in ran] == ["before the loop is entered", "on the loop", "from a thread"]
    assert {ident for _, ident in ran} == {threading.get_ident()}  # all on the loop's thread


def test_the_hop_does_nothing_once_the_run_is_over() -> None:
    loop = EventLoop()
    trio.run(_enter, loop)
    ran: list[int] = []
    thread = threading.Thread(target=loop.call, args=(ran.append, 1))
    thread.start()
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert ran == []


async def _enter(loop: EventLoop) -> None:
    loop.enter()


def test_publish_from_another_thread_after_the_server_stopped_does_nothing(sock_path: str) -> None:
    methods = Methods()
    methods.add_topic("t", "test events")
    with served(sock_path, methods) as handle, LineClient(sock_path) as c:
        assert c.call("rpc.subscribe", {"topic": "t"})["result"]["topic"] == "t"
        handle.server.publish("t", 1)  # from this thread: hops onto the server's loop
        assert c.read_json()["params"]["data"] == 1
    handle.server.publish("t", 2)  # the run is over: nothing, and no error
    assert handle.server.stats.events_dropped == 0


# -- exceptions out of run() ----------------------------------------------------------------------------


def test_sole_exception_unwraps_single_member_groups_only() -> None:
    error = ServerSetupError("x")
    assert sole_exception(BaseExceptionGroup("", [BaseExceptionGroup("", [error])])) is error
    several = BaseExceptionGroup("", [error, ValueError()])
    assert sole_exception(BaseExceptionGroup("", [several])) is several
