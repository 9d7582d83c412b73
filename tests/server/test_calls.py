"""A connection's lines become answers (jrpc_unix._server.calls): bad input of every kind gets
its error and leaves the connection usable, answers are one line of compact JSON, every outcome
is counted in rpc.stats; over real UNIX sockets, against an in-process server."""

from __future__ import annotations

import json
import logging

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import (
    SPEC_EXAMPLES,
    TIMEOUT,
    assert_answer,
    demo_module,
    lines,
    notification,
    request,
    serving,
    wait_for,
)
from helpers.server import connected, sample_methods

from jrpc_unix import (
    Limits,
    Methods,
    Response,
)


async def test_invalid_json_is_parse_error_and_connection_stays_usable(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        await c.send(b'{"jsonrpc": "2.0", "method": "ping", "id": \n')
        answer = await c.read_json()
        assert answer["error"]["code"] == -32700
        assert answer["error"]["message"] == "Parse error"
        assert answer["id"] is None
        assert await c.call("ping", rid=2) == {"jsonrpc": "2.0", "result": "pong", "id": 2}


async def test_over_size_line_is_32001_and_connection_stays_usable(sock_path: str) -> None:
    limits = Limits(max_message_size=100, shutdown_grace=2)
    async with serving(sock_path, sample_methods(), limits=limits), connected(sock_path) as c:
        await c.send(b'{"jsonrpc":"2.0","method":"echo","params":["' + b"x" * 1000 + b'"],"id":1}\n')
        answer = await c.read_json()
        assert answer["error"]["code"] == -32001
        assert answer["error"]["message"] == "Request too large"
        assert answer["id"] is None
        assert await c.call("ping", rid=2) == {"jsonrpc": "2.0", "result": "pong", "id": 2}
        # The same, arriving in many small writes: still one error, then normal service.
        for _ in range(50):
            await c.send(b"y" * 37)
        await c.send(b"\n" + lines(request("ping", rid=3)))
        assert (await c.read_json())["error"]["code"] == -32001
        assert (await c.read_json())["id"] == 3
        # A line of exactly the limit is accepted.
        exact = b'{"jsonrpc":"2.0","method":"echo","params":["' + b"z" * 46 + b'"],"id":4}'
        assert len(exact) == 100
        await c.send(exact + b"\n")
        assert (await c.read_json())["result"] == "z" * 46


@pytest.mark.parametrize(
    ("bad", "rid"),
    [
        (b"\xff\xfe", b"1"),
        (b"\xed\xa0\x80", b"1"),  # an encoded surrogate
        (b"\xff\xfe", b"12345678901234567890"),  # a 20-digit id: the stdlib parser's path
        (b"\xed\xa0\x80", b"12345678901234567890"),
    ],
)
async def test_invalid_utf8_is_parse_error(sock_path: str, bad: bytes, rid: bytes) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        await c.send(b'{"jsonrpc":"2.0","method":"echo","params":["' + bad + b'"],"id":' + rid + b"}\n")
        answer = await c.read_json()
        assert answer["error"]["code"] == -32700
        assert answer["id"] is None
        await c.send('{"jsonrpc":"2.0","method":"echo","params":["é€😀"],"id":2}\n'.encode())
        assert (await c.read_json())["result"] == "é€😀"


@pytest.mark.parametrize("opener", [b"[", b'{"a":'], ids=["arrays", "objects"])
async def test_deeply_nested_json_is_a_clear_error_not_a_crash(sock_path: str, opener: bytes) -> None:
    async with serving(sock_path, sample_methods()) as server, connected(sock_path) as c:
        await c.send(opener * 100_000 + b"\n")
        answer = await c.read_json()
        assert answer["error"]["code"] in (-32700, -32600)
        assert answer["id"] is None
        assert await c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}
        assert server.stats.connections_open == 1


async def test_deeply_nested_json_with_a_20_digit_number(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        await c.send(b"[" * 100_000 + b"12345678901234567890\n")
        assert (await c.read_json())["error"]["code"] == -32700
        assert await c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}


async def test_overflowing_id_with_a_20_digit_run_gets_an_answer(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        await c.send(b'{"jsonrpc":"2.0","method":"echo","params":["12345678901234567890"],"id":1e400}\n')
        assert "error" in await c.read_json()
        assert await c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}


@pytest.mark.parametrize("with_too_long", [False, True])
async def test_wide_integers_among_ordinary_lines_of_one_read(sock_path: str, with_too_long: bool) -> None:
    """The 19-digit check runs once per read: a wide integer on one line of many stays exact."""
    limits = Limits(max_message_size=200, shutdown_grace=2)
    wide = [2**64, -(2**63) - 1, 10**30]
    big = [b'{"jsonrpc":"2.0","method":"echo","params":[%d],"id":%d}' % (n, i) for i, n in enumerate(wide)]
    ordinary = [b'{"jsonrpc":"2.0","method":"echo","params":[%d],"id":%d}' % (i, 10 + i) for i in range(5)]
    payload = [ordinary[0], big[0], ordinary[1], ordinary[2], big[1], big[2], *ordinary[3:]]
    if with_too_long:
        payload.insert(3, b"x" * 300)
    async with serving(sock_path, sample_methods(), limits=limits), connected(sock_path) as c:
        await c.send(b"\n".join(payload) + b"\n")
        answers = [await c.read_json() for _ in payload]
    if with_too_long:
        assert answers.pop(3)["error"]["code"] == -32001
    results = {a["id"]: a["result"] for a in answers}
    assert results == {**dict(enumerate(wide)), **{10 + i: i for i in range(5)}}
    assert all(type(v) is int for v in results.values())


async def test_crlf_blank_lines_and_final_line_without_newline(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        await c.send(b'\r\n  \n{"jsonrpc":"2.0","method":"ping","id":1}\r\n\n')
        await c.send(b'{"jsonrpc":"2.0","method":"ping","id":2}')  # no newline: then EOF
        await c.send_eof()
        raw = await c.read_to_eof()
    assert [json.loads(x)["id"] for x in raw.splitlines()] == [1, 2]
    assert raw.endswith(b"\n")


async def test_answers_are_one_line_of_compact_json(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        await c.send(lines(request("echo", ["a\nb\r\nc\u2028"], 1)))
        line = await c.readline()
    assert line == b'{"jsonrpc":"2.0","result":"a\\nb\\r\\nc\xe2\x80\xa8","id":1}'


@pytest.mark.parametrize("fast_path", [True, False])
async def test_spec_examples_in_process_with_and_without_fast_path(sock_path: str, fast_path: bool) -> None:
    """The demo's answers, from an in-process server, with both dispatch paths."""
    async with serving(sock_path, demo_module().methods, fast_path=fast_path):
        for _, req, want in SPEC_EXAMPLES:
            async with connected(sock_path) as c:
                await c.send(req.encode() + b"\n")
                await c.send_eof()
                raw = await c.read_to_eof()
            if want is None:
                assert raw == b""
            else:
                assert_answer(json.loads(raw), want)


async def test_spec_examples_one_byte_per_write(sock_path: str) -> None:
    """Framing over a real socket, however the bytes are cut: every example, one byte per send."""
    async with serving(sock_path, demo_module().methods):
        for _, req, want in SPEC_EXAMPLES:
            async with connected(sock_path) as c:
                for byte in req.encode() + b"\n":
                    await c.send(bytes([byte]))
                await c.send_eof()
                raw = await c.read_to_eof()
            if want is None:
                assert raw == b""
            else:
                assert_answer(json.loads(raw), want)


async def test_response_objects_over_the_socket(sock_path: str) -> None:
    methods = Methods()

    @methods.add
    def good() -> Response:
        return Response.ok({"a": 1})

    @methods.add
    def bad() -> Response:
        return Response.fail("broken", code=17, data=[1])

    @methods.add
    def weird() -> object:
        return object()

    async with serving(sock_path, methods), connected(sock_path) as c:
        assert (await c.call("good"))["result"] == {"a": 1}
        assert (await c.call("bad", rid=2))["error"] == {"code": 17, "message": "broken", "data": [1]}
        answer = await c.call("weird", rid=3)
        assert answer["error"]["code"] == -32603
        assert answer["id"] == 3
        assert (await c.call("good", rid=4))["id"] == 4  # the connection survived


async def test_invalid_params_over_the_socket(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()), connected(sock_path) as c:
        answer = await c.call("echo", [1, 2, 3], rid="p")
        assert answer["id"] == "p"
        assert answer["error"]["code"] == -32602
        assert answer["error"]["message"] == "Invalid params"
        assert isinstance(answer["error"]["data"], str)
        answer = await c.call("echo", {"y": 1}, rid="q")
        assert answer["error"]["code"] == -32602


async def test_failing_notifications_never_get_an_answer(sock_path: str) -> None:
    methods = sample_methods()

    @methods.add
    def refuse() -> Response:
        return Response.fail("no", code=3)

    @methods.add
    async def crash_async() -> None:
        raise RuntimeError("async crash")

    @methods.add(blocking=True)
    def crash_blocking() -> None:
        raise RuntimeError("blocking crash")

    @methods.add
    def unserializable() -> object:
        return object()

    async with serving(sock_path, methods), connected(sock_path) as c:
        await c.send(
            lines(
                notification("crash"),
                notification("crash_async"),
                notification("crash_blocking"),
                notification("refuse"),
                notification("no.such.method"),
                notification("echo", [1, 2, 3]),  # bad params
                notification("unserializable"),
                [notification("crash"), notification("no.such.method")],
                request("ping", rid="next"),
            )
        )
        assert await c.read_json() == {"jsonrpc": "2.0", "result": "pong", "id": "next"}
        await c.send_eof()
        assert await c.read_to_eof() == b""


async def test_stats_counters(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()) as server:
        async with connected(sock_path) as c:
            await c.call("ping", rid=1)
            await c.call("nope", rid=2)  # an error
            await c.send(b"not json\n")
            await c.read_json()  # an error
            await c.send(lines(notification("echo", [1])))
            await c.call("nap", [0], rid=3)
            s = server.stats
            assert (s.calls, s.notifications, s.errors) == (3, 1, 2)
            assert (s.connections_open, s.connections_total, s.in_flight) == (1, 1, 0)
        async with connected(sock_path) as c2:
            await c2.call("ping")
        with trio.fail_after(TIMEOUT):
            while server.stats.connections_open:  # the server notices the close
                await trio.testing.wait_all_tasks_blocked()
        assert server.stats.connections_total == 2
        snapshot = server.stats.snapshot()
        json.dumps(snapshot)  # JSON-ready


async def test_failed_notifications_are_counted(sock_path: str) -> None:
    async with serving(sock_path, sample_methods()) as server, connected(sock_path) as c:
        before = server.stats.snapshot()
        await c.send(lines(notification("crash")))
        assert (await c.call("ping"))["result"] == "pong"  # no answer came for the notification
        after = server.stats.snapshot()
    assert after["server"]["errors"] > before["server"]["errors"]


async def test_internal_error_is_logged_with_its_correlation_id(
    sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    methods = Methods()

    @methods.add
    def explode() -> None:
        raise KeyError("the secret key name")

    @methods.add(blocking=True)
    def explode_in_thread() -> None:
        raise ValueError("thread secret")

    async with serving(sock_path, methods), connected(sock_path) as c:
        for name, secret in (("explode", "the secret key name"), ("explode_in_thread", "thread secret")):
            await c.send(lines(request(name, rid=name)))
            raw = await c.readline()
            answer = json.loads(raw)
            assert answer["error"]["code"] == -32603
            assert answer["error"]["message"] == "Internal error"
            assert secret.encode() not in raw
            assert b"Traceback" not in raw
            error_id = answer["error"]["data"]["error_id"]
            # Logged off the event loop (jrpc_unix._server.logqueue): it arrives a moment later.
            records = await _logged(caplog, error_id)
            assert len(records) == 1
            assert records[0].exc_info is not None
            assert secret in str(records[0].exc_info[1])


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    def found() -> list[logging.LogRecord]:
        return [r for r in caplog.records if text in r.getMessage()]

    await trio.to_thread.run_sync(wait_for, found, f"a log record with {text!r}")
    return found()
