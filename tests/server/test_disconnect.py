"""A client that goes away (specs/protocol.md §5, §10): its slot is freed at once, its work stops.

In-process servers in the test's trio run, over real UNIX sockets. Where the server's own timers
matter (the idle watchdog) the run uses ``autojump_clock``: virtual time passes only while every
task waits, so no real timers race and a 60 s wait costs nothing.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
import trio
import trio.testing
from helpers import TIMEOUT, TrioLineClient, lines, notification, request, serving, until

from jrpc_unix import Limits, Methods, Server


class Work:
    """Handlers that hold until the test opens their gate, and record what happened to them."""

    def __init__(self) -> None:
        self.entered: set[str] = set()
        self.inside: dict[str, threading.Event] = {}  # set on entry: a thread can wait for it
        self.cancelled: set[str] = set()
        self.finished: set[str] = set()
        self.started = 0
        self._gates: dict[str, trio.Event] = {}
        self._thread_gates: dict[str, threading.Event] = {}
        m = self.methods = Methods()

        async def hold(name: str) -> str:
            self.entered.add(name)
            try:
                await self.gate(name).wait()
            except trio.Cancelled:
                self.cancelled.add(name)
                raise
            self.finished.add(name)
            return name

        def hold_thread(name: str) -> str:
            self.entered.add(name)
            self.inside.setdefault(name, threading.Event()).set()
            self.thread_gate(name).wait(TIMEOUT)
            self.finished.add(name)
            return name

        m.add("hold")(hold)
        m.add("hold_rtc", run_to_completion=True)(hold)
        m.add("hold_thread_rtc", blocking=True, run_to_completion=True)(hold_thread)

        @m.add
        async def sleep(seconds: float) -> float:
            self.started += 1
            number = str(self.started)
            try:
                await trio.sleep(seconds)
            except trio.Cancelled:
                self.cancelled.add(number)
                raise
            self.finished.add(number)
            return seconds

        @m.add
        def ping() -> str:
            return "pong"

        @m.add
        def echo(x: Any) -> Any:
            return x

    def gate(self, name: str) -> trio.Event:
        return self._gates.setdefault(name, trio.Event())

    def thread_gate(self, name: str) -> threading.Event:
        return self._thread_gates.setdefault(name, threading.Event())

    def release(self, name: str) -> None:
        self.gate(name).set()
        self.thread_gate(name).set()


def server_figures(server: Server) -> dict[str, Any]:
    figures: dict[str, Any] = server.stats.snapshot()["server"]
    return figures


async def ping(path: str) -> bool:
    c = await TrioLineClient.connect(path)
    try:
        return bool((await c.call("ping"))["result"] == "pong")
    finally:
        await c.aclose()


# -- the crash: a stalled, half-closed connection with a run-to-completion call -----------------


@pytest.mark.parametrize("method", ["hold_rtc", "hold_thread_rtc"], ids=["async", "blocking"])
async def test_a_stalled_half_closed_connection_is_closed_alone(
    sock_path: str, autojump_clock: trio.testing.MockClock, method: str
) -> None:
    """It once crashed the server: the watchdog closed the socket, then polled its fd (-1)."""
    work = Work()
    limits = Limits(idle_timeout=1.0, shutdown_grace=2.0)
    async with serving(sock_path, work.methods, limits=limits) as server:
        stuck = await trio.open_unix_socket(sock_path)  # never reads a byte
        subscribe = request("rpc.subscribe", {"topic": "stats", "interval": 0.05}, 1)
        await stuck.send_all(lines(subscribe, request(method, ["r"], 2)))
        await stuck.send_eof()  # half-closed: the server answers all, then closes
        if method == "hold_rtc":
            await until(lambda: "r" in work.entered, "the run-to-completion call to run")
        else:  # virtual time would run ahead while the thread starts: wait in real time
            event = work.inside.setdefault("r", threading.Event())
            assert await trio.to_thread.run_sync(event.wait, TIMEOUT)
        # The events fill every buffer; no write completes for idle_timeout: the peer is gone.
        await until(lambda: server.stats.connections_open == 0, "the stalled connection to go", timeout=120)
        await trio.sleep(10)  # forty more watchdog ticks
        assert await ping(sock_path), "everybody else is served as before"
        assert server_figures(server)["connections"]["detached"] == 1  # its call runs on
        work.release("r")  # (a long virtual timeout: the thread returns in real time)
        await until(lambda: server_figures(server)["connections"]["detached"] == 0, "the call", timeout=3600)
        assert "r" in work.finished
        await stuck.aclose()


# -- slots: a closed connection frees its slot at once ------------------------------------------


async def test_a_notification_running_after_its_client_left_holds_no_slot(sock_path: str) -> None:
    work = Work()
    limits = Limits(max_connections_per_uid=3, shutdown_grace=2.0)
    async with serving(sock_path, work.methods, limits=limits) as server:
        for i in range(6):  # twice the limit of connections per uid
            c = await TrioLineClient.connect(sock_path)
            await c.send(lines(notification("hold", [f"n{i}"])))
            await c.aclose()  # gone at once, the notification just sent
            await until(lambda i=i: f"n{i}" in work.entered, "the notification to run")  # type: ignore[misc]
            await until(lambda: server.stats.connections_open == 0, "the slot to be freed")
        assert server_figures(server)["connections"]["detached"] == 6  # still running, elsewhere
        assert await ping(sock_path)
        for i in range(6):
            work.release(f"n{i}")
        await until(lambda: server_figures(server)["connections"]["detached"] == 0, "the notifications")
    assert work.finished == {f"n{i}" for i in range(6)}, "notifications already received still run"
    assert not work.cancelled


async def _trickle(stream: trio.SocketStream, data: bytes, pause: float) -> None:
    """Send ``data`` a byte at a time, ``pause`` seconds apart, until done or refused."""
    try:
        for byte in data:
            await stream.send_all(bytes([byte]))
            await trio.sleep(pause)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


async def test_a_message_arriving_slower_than_the_idle_timeout_is_cut_off(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Slowloris: a line that grows a byte at a time never ends, so it may not hold a slot."""
    limits = Limits(idle_timeout=1.0, shutdown_grace=2.0)
    async with serving(sock_path, Work().methods, limits=limits) as server, trio.open_nursery() as nursery:
        stream = await trio.open_unix_socket(sock_path)
        start = trio.current_time()
        line = lines(request("echo", ["x" * 200], 1))  # ~250 bytes: 100 s at this pace
        nursery.start_soon(_trickle, stream, line, 0.4)  # well inside the idle timeout each time
        with trio.fail_after(TIMEOUT), contextlib.suppress(trio.BrokenResourceError):  # (a reset)
            assert await stream.receive_some(1000) == b""
        took = trio.current_time() - start
        assert 1.0 <= took <= 1.5, took  # idle_timeout after its first byte (+ a watchdog tick)
        await until(lambda: server.stats.connections_open == 0, "the slot to be freed")
        await stream.aclose()


async def test_a_message_arriving_byte_by_byte_within_the_idle_timeout_is_served(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Idle means nothing received: a line trickling in, each byte well inside the timeout,
    and the whole line inside it too, is a message like any other."""
    limits = Limits(idle_timeout=1.0, shutdown_grace=2.0)
    data = lines(request("ping", rid=1))
    async with serving(sock_path, Work().methods, limits=limits):
        c = await TrioLineClient.connect(sock_path)
        for byte in data:  # ~45 bytes over 0.9 s
            await c.send(bytes([byte]))
            await trio.sleep(0.02)
        assert await c.read_json() == {"jsonrpc": "2.0", "result": "pong", "id": 1}
        for _ in range(3):  # and again: each message has its own idle_timeout
            for byte in data:
                await c.send(bytes([byte]))
                await trio.sleep(0.02)
            assert (await c.read_json())["id"] == 1
        await c.aclose()


# -- a closed client's work: cancelled, and nothing it queued starts ----------------------------


async def test_a_client_that_closes_cancels_its_calls_and_nothing_queued_starts(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    work = Work()
    async with serving(sock_path, work.methods) as server:
        for _ in range(10):
            c = await TrioLineClient.connect(sock_path)
            await c.send(lines(*(request("sleep", [5], i) for i in range(200))))
            await c.aclose()
        with trio.fail_after(4.9):  # before the first sleep(5) could finish
            await until(
                lambda: server.stats.connections_open == 0 and server.stats.in_flight == 0,
                "every connection and call to end",
                timeout=60,
            )
        await trio.sleep(60)  # and nothing of theirs starts later
    assert not work.finished
    assert 0 < work.started <= 10 * Limits().max_in_flight, work.started  # only what already ran
    assert len(work.cancelled) == work.started


async def test_a_client_that_closes_while_its_reader_waits_is_noticed(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    """More pipelined than the server holds: reading pauses, and the close is noticed anyway."""
    work = Work()
    async with serving(sock_path, work.methods, limits=Limits(max_in_flight=1, shutdown_grace=2.0)) as server:
        c = await TrioLineClient.connect(sock_path)
        await c.send(lines(request("hold", ["first"], 0)))
        await until(lambda: "first" in work.entered, "the first call to run")
        with trio.move_on_after(1):  # until the server stops taking more (or 1 s)
            await c.send(lines(*(request("hold", [f"h{i}"], i) for i in range(1, 20_000))))
        await c.aclose()
        await until(lambda: "first" in work.cancelled, "the close to cancel the running call")
        await until(lambda: server.stats.connections_open == 0, "the slot to be freed")
    assert work.entered == {"first"}, "nothing queued started after the close"


async def test_work_left_behind_is_bounded_by_max_connections(sock_path: str) -> None:
    """Connect, send a slow notification, leave, repeat: at most max_connections run on."""
    work = Work()
    limits = Limits(max_connections=2, max_connections_per_uid=None, shutdown_grace=2.0)
    async with serving(sock_path, work.methods, limits=limits) as server:
        for i in range(3):
            c = await TrioLineClient.connect(sock_path)
            await c.send(lines(notification("hold", [f"n{i}"])))
            await until(lambda i=i: f"n{i}" in work.entered, "the notification to run")  # type: ignore[misc]
            await c.aclose()
            await until(lambda: server.stats.connections_open == 0, "the slot to be freed")
        assert work.cancelled == {"n2"}, "the third one's work is cancelled, not left running"
        assert server_figures(server)["connections"]["detached"] == 2
        for i in range(3):
            work.release(f"n{i}")
        await until(lambda: server_figures(server)["connections"]["detached"] == 0, "the notifications")
    assert work.finished == {"n0", "n1"}
