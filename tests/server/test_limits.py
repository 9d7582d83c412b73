"""Limits and back-pressure (specs/protocol.md §7), over real sockets.

Each limit is set small on an in-process server and exceeded by a real client; the slow-reader
back-pressure is measured on the demo service as a separate process (its RSS from /proc).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import threading
import time
from typing import Any

import pytest
import trio
import trio.testing
from helpers import ROOT, TIMEOUT, DemoProcess, LineClient, TrioLineClient, ok, serving, until, wait_for
from helpers.ops import (
    PING,
    PONG,
    as_nobody,
    basic_methods,
    figures,
    open_for_others,
    ping,
    python_for_others,
    quiet_demo_figures,
    read_until_eof_or_error,
    record,
    req,
    rss_kib,
    served,
)
from helpers.server import connected

from jrpc_unix import Limits, Methods

MiB = 1 << 20


def error_code(answer: dict[str, Any]) -> int:
    return int(answer["error"]["code"])


# -- the documented defaults ----------------------------------------------------------------------


def _spec_defaults() -> dict[str, str]:
    text = (ROOT / "specs" / "protocol.md").read_text()
    section = text.split("## 7.", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)`[^|]*\| ([^|]+) \|", section, re.MULTILINE)
    return {name: value.strip() for name, value in rows}


def _parse_default(text: str) -> float | None:
    if text == "none":
        return None
    number, _, unit = text.partition(" ")
    return float(number) * {"": 1, "MiB": MiB, "s": 1}[unit]


def test_spec_documents_every_limit_with_its_real_default() -> None:
    documented = _spec_defaults()
    actual = Limits()
    assert set(documented) == set(Limits.__dataclass_fields__)
    for name, text in documented.items():
        assert _parse_default(text) == getattr(actual, name), name


@pytest.mark.parametrize("field", sorted(Limits.__dataclass_fields__))
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=f"Limits.{field} must be positive"):
        Limits(**{field: 0})


# -- message size ---------------------------------------------------------------------------------------


def _echo_line(size: int, rid: int) -> bytes:
    """An echo call whose line (without the newline) is exactly ``size`` bytes."""
    base = len(req("echo", [""], rid)) - 1
    return req("echo", ["x" * (size - base)], rid)


@pytest.mark.parametrize("chunk", [None, 1, 7, 4096])
def test_max_message_size_however_the_line_is_split(sock_path: str, chunk: int | None) -> None:
    limit = 2000
    with served(sock_path, basic_methods(), limits=Limits(max_message_size=limit)) as handle:
        stream = b"".join(
            [_echo_line(limit, 1), _echo_line(limit + 1, 2), b"z" * 20_000 + b"\n", _echo_line(limit, 3)]
        )
        with LineClient(sock_path) as c:
            if chunk is None:
                c.send(stream)
            else:
                for i in range(0, len(stream), chunk):
                    c.send(stream[i : i + chunk])
            first, too_long, too_long_2, third = (c.read_json() for _ in range(4))
        assert first["id"] == 1
        assert len(first["result"]) > 1900
        for answer in (too_long, too_long_2):
            assert answer["id"] is None
            assert answer["error"] == {
                "code": -32001,
                "message": "Request too large",
                "data": f"message exceeds the limit of {limit} bytes",
            }
        assert third["id"] == 3
        assert handle.server.stats.rejected_requests["too_large"] == 2


def test_max_batch(sock_path: str) -> None:
    with served(sock_path, basic_methods(), limits=Limits(max_batch=3)), LineClient(sock_path) as c:
        batch = [{"jsonrpc": "2.0", "method": "ping", "id": i} for i in range(4)]
        c.send(batch)
        answer = c.read_json()
        assert isinstance(answer, dict), "an over-long batch gets one error, not an array"
        assert answer["id"] is None
        assert error_code(answer) == -32001
        assert answer["error"]["data"] == "batch of 4 requests exceeds the limit of 3"
        c.send(batch[:3])
        assert sorted(a["id"] for a in c.read_json()) == [0, 1, 2]


# -- connections -------------------------------------------------------------------------------------


def _refused(c: LineClient) -> dict[str, Any]:
    answer = c.read_json()
    assert read_until_eof_or_error(c) == b"", "a refused connection must be closed after its one line"
    return answer


def test_max_connections(sock_path: str) -> None:
    """We are the server's own user: we get the shared connections, then the reserved ones.

    (Other users, who only get the shared ones, are in test_admission.py.)
    """
    limits = Limits(max_connections=2, reserved_connections=1, max_connections_per_uid=None)
    with served(sock_path, basic_methods(), limits=limits) as handle:
        held = [LineClient(sock_path) for _ in range(3)]
        try:
            for c in held:
                c.send(PING)
                assert c.read_json() == PONG  # accepted and served
            with LineClient(sock_path) as extra:
                answer = _refused(extra)
            data = (
                "too many connections (limit 2, and all 1 reserved for the server's user and root are taken)"
            )
            assert answer == {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": -32006, "message": "Server overloaded", "data": data},
            }
            assert handle.server.stats.rejected_connections == {"reserved_connections": 1}
            held.pop().close()
            # The server notices the close on its own; a new connection is admitted soon after.
            wait_for(lambda: handle.server.stats.connections_open == 2, "the server to see the close")
            assert ping(sock_path)
            for c in held:  # the held connections were never disturbed
                c.send(PING)
                assert c.read_json() == PONG
        finally:
            for c in held:
                c.close()


def test_max_connections_per_uid(sock_dir: str) -> None:
    if os.geteuid() != 0 or python_for_others() is None:
        pytest.skip("needs root to run a client as another user")
    open_for_others(sock_dir)
    path = os.path.join(sock_dir, "s.sock")
    limits = Limits(max_connections_per_uid=2)
    with served(path, basic_methods(), limits=limits, socket_mode=0o666) as handle:
        held = [LineClient(path) for _ in range(2)]
        try:
            for c in held:
                c.send(PING)
                assert c.read_json() == PONG
            with LineClient(path) as extra:
                answer = _refused(extra)
            assert error_code(answer) == -32006
            assert answer["error"]["data"] == f"too many connections from uid {os.getuid()} (limit 2)"
            # Another user is not affected by root's connections.
            report = as_nobody(path, req("ping", rid=1))
            assert report["lines"] == [ok("pong", 1)]
            assert handle.server.stats.rejected_connections["max_connections_per_uid"] == 1
        finally:
            for c in held:
                c.close()


# -- in-flight calls -------------------------------------------------------------------------------------


class Gauge:
    """Counts handlers running at once; ``hold`` waits until released (no timing involved)."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0
        self.release = trio.Event()
        self.token: trio.lowlevel.TrioToken | None = None
        m = self.methods = Methods()

        @m.add
        async def hold(i: int) -> int:
            self.token = trio.lowlevel.current_trio_token()
            self.now += 1
            self.peak = max(self.peak, self.now)
            try:
                await self.release.wait()
            finally:
                self.now -= 1
            return i

        @m.add
        def ping() -> str:
            return "pong"

    def open_gate(self) -> None:
        assert self.token is not None
        trio.from_thread.run_sync(self.release.set, trio_token=self.token)


def test_max_in_flight_per_connection(sock_path: str) -> None:
    gauge = Gauge()
    with served(sock_path, gauge.methods, limits=Limits(max_in_flight=2)), LineClient(sock_path) as c:
        c.send(b"".join(req("hold", [i], i) for i in range(6)) + PING)
        wait_for(lambda: gauge.now == 2, "two calls to run")
        # The limit is reached: the server reads no further, so even the quick ping waits.
        with LineClient(sock_path) as other:  # other connections are not held up
            other.send(req("hold", [99], 99))
            wait_for(lambda: gauge.now == 3, "the other connection's call to run")
        c.sock.settimeout(0.2)
        with pytest.raises(TimeoutError):
            c.readline()
        c.sock.settimeout(TIMEOUT)
        gauge.open_gate()
        answers = [c.read_json() for _ in range(7)]
        assert sorted(a["id"] for a in answers if a["id"] != "ping") == list(range(6))
        # Read only once the sixth call had a slot, i.e. after four calls had finished and answered.
        assert answers.index(PONG) >= 4, answers
        assert gauge.peak == 3  # 2 on this connection + 1 on the other


# -- idle timeout ----------------------------------------------------------------------------------------


def _slow_methods() -> Methods:
    m = basic_methods()

    @m.add
    async def sleep(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    @m.add(blocking=True)
    def block(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @m.add(timeout=0.2)
    async def slow(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    @m.add(timeout=2.0)
    async def patient(seconds: float) -> float:
        await trio.sleep(seconds)
        return seconds

    return m


async def test_idle_connection_is_closed(sock_path: str, autojump_clock: trio.testing.MockClock) -> None:
    async with serving(sock_path, basic_methods(), limits=Limits(idle_timeout=1.0)) as server:
        c = await TrioLineClient.connect(sock_path)
        start = trio.current_time()
        assert await c.read_to_eof() == b""
        assert 1.0 <= trio.current_time() - start <= 1.25  # checked every quarter of the timeout
        await until(lambda: server.stats.connections_open == 0, "the connection to be gone")
        await c.aclose()


async def test_idle_timer_restarts_with_each_request_and_waits_for_running_calls(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with serving(sock_path, _slow_methods(), limits=Limits(idle_timeout=1.0)):
        c = await TrioLineClient.connect(sock_path)
        # A call running longer than the idle timeout keeps the connection open.
        assert await c.call("sleep", [3.0]) == ok(3.0, 1)
        # Requests at intervals shorter than the timeout keep it open too.
        for _ in range(10):
            assert await c.call("ping", rid="ping") == PONG
            await trio.sleep(0.7)  # the client's pace (virtual time)
        start = trio.current_time()
        assert await c.read_to_eof() == b""  # then it goes quiet and is closed
        assert 1.0 - 0.7 <= trio.current_time() - start <= 1.25 - 0.7
        await c.aclose()


async def test_client_that_stopped_reading_is_idled_out(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    """It writes and never reads: once no answer has left for idle_timeout, the peer is gone."""
    limits = Limits(idle_timeout=1.0, shutdown_grace=0.5)
    async with serving(sock_path, basic_methods(), limits=limits) as server:
        stream = await trio.open_unix_socket(sock_path)
        flood = b"".join(req("echo", ["q" * 500], i) for i in range(50_000))  # 25 MB of answers
        start = trio.current_time()
        with pytest.raises(trio.BrokenResourceError):  # until the server closes on us
            await stream.send_all(flood)
        assert 1.0 <= trio.current_time() - start <= 1.5
        await until(lambda: server.stats.connections_open == 0, "the stalled connection to go")
        await stream.aclose()


# -- handler timeouts -------------------------------------------------------------------------------------


async def test_per_method_timeout_answers_32004_and_the_connection_goes_on(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with serving(sock_path, _slow_methods()) as server, connected(sock_path) as c:
        assert await c.call("slow", [30], rid="s") == {
            "jsonrpc": "2.0",
            "id": "s",
            "error": {
                "code": -32004,
                "message": "Handler timed out",
                "data": "slow ran longer than 0.2 s and was cancelled",
            },
        }
        assert await c.call("slow", [0.01], rid=2) == ok(0.01, 2)
        assert server.stats.rejected_requests["timeout"] == 1


async def test_server_wide_handler_timeout_and_per_method_override(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with serving(sock_path, _slow_methods(), limits=Limits(handler_timeout=0.2)):
        c = await TrioLineClient.connect(sock_path)
        assert error_code(await c.call("sleep", [30])) == -32004
        assert error_code(await c.call("block", [1.0], rid=2)) == -32004  # a worker thread: abandoned
        assert await c.call("patient", [1.5], rid=3) == ok(1.5, 3)  # its own timeout=2 wins
        assert await c.call("sleep", [0.01], rid=4) == ok(0.01, 4)
        await c.aclose()


def test_timed_out_notification_gets_no_answer(sock_path: str) -> None:
    with served(sock_path, _slow_methods()), LineClient(sock_path) as c:
        c.send(req("slow", [30], notify=True) + PING)
        assert c.read_json() == PONG  # the very next line: nothing for the notification
        c.shutdown_write()
        assert c.read_to_eof() == b""


# -- back-pressure: a client that writes and never reads -------------------------------------------------


def _write_until_stalled(sock: socket.socket, data: bytes, stall: float = 0.5) -> int:
    """Send without reading until the peer has taken nothing for ``stall`` seconds; bytes sent."""
    sent = 0
    while sent < len(data):
        try:
            sent += sock.send(data[sent : sent + 65536])
        except BlockingIOError:
            _, writable, _ = select.select([], [sock], [], stall)
            if not writable:
                return sent
    return sent


def _pump(sock: socket.socket, data: bytes, sent: int, expect: int) -> list[bytes]:
    """Write the rest and read every answer line, interleaved (bounded by TIMEOUT per wait)."""
    lines: list[bytes] = []
    buf = b""
    while len(lines) < expect:
        want_write = [sock] if sent < len(data) else []
        readable, writable, _ = select.select([sock], want_write, [], TIMEOUT)
        assert readable or writable, f"stuck with {len(lines)} of {expect} answers"
        if writable:
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(data[sent : sent + 65536])
        if readable:
            chunk = sock.recv(1 << 20)
            assert chunk, f"EOF after {len(lines)} of {expect} answers"
            buf += chunk
            *done, buf = buf.split(b"\n")
            lines += done
    assert buf == b""
    return lines


def test_client_that_never_reads_cannot_grow_the_server(sock_dir: str) -> None:
    n = 200_000
    path = os.path.join(sock_dir, "demo.sock")
    data = b"".join(b'{"jsonrpc":"2.0","method":"ping","id":%d}\n' % i for i in range(n))
    with DemoProcess(path, os.path.join(sock_dir, "log")) as demo:
        assert ping(path)
        before = quiet_demo_figures(demo.pid, path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.setblocking(False)
        try:
            sent = _write_until_stalled(sock, data)
            assert sent < len(data) // 2, f"the server kept reading ({sent} of {len(data)} bytes)"
            stalled = figures(demo.pid)
            # The server is stuck on nobody's account: other clients are served at once.
            assert ping(path)
            assert stalled["rss_kib"] - before["rss_kib"] < 64 * 1024, (before, stalled)
            # Reading now drains every answer, in order, exactly once.
            lines = _pump(sock, data, sent, n)
            peak = rss_kib(demo.pid)
        finally:
            sock.close()
        assert len(lines) == n
        assert lines[0] == b'{"jsonrpc":"2.0","result":"pong","id":0}'
        assert all(json.loads(line)["id"] == i for i, line in enumerate(lines))
        after = quiet_demo_figures(demo.pid, path)
        record(
            "never-reading client, 200k pings",
            before,
            after,
            stalled_after_bytes=sent,
            stalled_rss_mib=f"{stalled['rss_kib'] / 1024:.1f}",
            peak_rss_mib=f"{peak / 1024:.1f}",
        )
        assert after["rss_kib"] - before["rss_kib"] < 64 * 1024
        assert ping(path)


def test_max_pending_output_in_process(sock_path: str) -> None:
    """A small max_pending_output: the server stops reading, then resumes when the client reads."""
    limits = Limits(max_pending_output=64 * 1024)
    with served(sock_path, basic_methods(), limits=limits) as handle:
        payload = "y" * 4000
        data = b"".join(req("echo", [payload], i) for i in range(2000))  # ~8 MB of answers
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sock_path)
        sock.setblocking(False)
        try:
            sent = _write_until_stalled(sock, data)
            assert sent < len(data) // 2
            calls_when_stalled = handle.server.stats.calls
            assert calls_when_stalled < 2000
            lines = _pump(sock, data, sent, 2000)
        finally:
            sock.close()
        assert [json.loads(x)["id"] for x in lines] == list(range(2000))
        assert all(json.loads(x)["result"] == payload for x in lines[:3])


def test_never_reading_client_that_disconnects_frees_everything(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "demo.sock")
    data = b"".join(req("echo", ["w" * 1000], i) for i in range(20_000))
    with DemoProcess(path, os.path.join(sock_dir, "log")) as demo:
        assert ping(path)
        before = quiet_demo_figures(demo.pid, path)
        for _ in range(5):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            sock.setblocking(False)
            _write_until_stalled(sock, data, stall=0.3)
            sock.close()
        after = quiet_demo_figures(demo.pid, path)
        record("5 never-reading clients (20 MB of echo each) that disconnect", before, after)
        assert after["rss_kib"] - before["rss_kib"] < 20 * 1024
        assert ping(path)


def test_back_pressure_does_not_block_other_connections_in_process(sock_path: str) -> None:
    with served(sock_path, basic_methods()):
        stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        stuck.connect(sock_path)
        stuck.setblocking(False)
        try:
            flood = b"".join(req("echo", ["q" * 500], i) for i in range(50_000))
            _write_until_stalled(stuck, flood, stall=0.3)
            done = threading.Event()

            def many_pings() -> None:
                for _ in range(50):
                    assert ping(sock_path)
                done.set()

            t = threading.Thread(target=many_pings, daemon=True)
            t.start()
            t.join(TIMEOUT)
            assert done.is_set()
        finally:
            stuck.close()


def test_one_read_cannot_queue_answers_past_max_pending_output(sock_path: str) -> None:
    """Answers far larger than their requests (rpc.discover): one read must not queue MBs."""
    limit = 64 * 1024
    with served(sock_path, basic_methods(), limits=Limits(max_pending_output=limit)) as handle:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(sock_path)
        try:
            request = b'{"jsonrpc":"2.0","method":"rpc.discover","id":1}\n'
            sock.sendall(request * 1000)  # ~50 kB of requests, ~2 MB of answers, nothing read
            wait_for(lambda: handle.server.connections.live, "the server to accept us")
            (conn,) = handle.server.connections.live
            wait_for(
                lambda: conn.parts is not None and conn.parts.writer.writing,
                "the server to block writing to us",
            )
            assert conn.parts is not None
            biggest = max(len(request), 4096) * 4  # one answer over the limit, at most
            assert conn.parts.writer.pending <= limit + biggest
            sock.settimeout(TIMEOUT)
            got = b""
            while got.count(b"\n") < 1000:  # and nothing was lost
                got += sock.recv(1 << 20)
            assert got.count(b'"openrpc"') == 1000
        finally:
            sock.close()


async def test_a_per_method_timeout_beats_the_server_wide_one_for_blocking_handlers_too(
    sock_path: str, autojump_clock: trio.testing.MockClock
) -> None:
    methods = Methods()
    stuck = threading.Event()

    @methods.add(timeout=0.1)
    async def forever() -> None:
        await trio.sleep_forever()

    @methods.add
    async def default_limit() -> None:
        await trio.sleep_forever()

    @methods.add(blocking=True, timeout=0.1)
    def blocked() -> None:
        stuck.wait(TIMEOUT)

    try:
        async with serving(sock_path, methods, limits=Limits(handler_timeout=0.2)), connected(sock_path) as c:
            for name, took in (("forever", 0.1), ("default_limit", 0.2), ("blocked", 0.1)):
                start = trio.current_time()
                answer = await c.call(name, rid=name)
                assert trio.current_time() - start == pytest.approx(took)
                assert answer["id"] == name
                assert answer["error"]["code"] == -32004
                assert answer["error"]["message"] == "Handler timed out"
    finally:
        stuck.set()
