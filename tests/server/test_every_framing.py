"""Every framing on one socket, with no option set: the Go original's frames (replayed from the
golden bytes it sent and answered), LSP Content-Length and RFC 7464 json-seq; answers in the
client's framing, limits alike, an unknown start answered -32700 and logged by its first bytes."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import socket
import struct
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from helpers import TIMEOUT, LineClient, serving, short_tmpdir, until, wait_for
from helpers.ops import served

from jrpc_unix import Call, Client, Limits, Methods, Response, RpcError, current_context, open_client
from jrpc_unix._cli.parser import FRAMINGS as CLI_FRAMINGS
from jrpc_unix._wire.framings import NAMES
from jrpc_unix._wire.unixsock import frame
from jrpc_unix.aio import open_client as aio_open_client

GOLDEN = Path(__file__).resolve().parents[1] / "interop" / "go-unixsock"
FIXTURES = sorted(p.name.removesuffix(".request.bin") for p in GOLDEN.glob("0*.request.bin"))


def go_readme_handler(ran: list[tuple[str, Any]]) -> Methods:
    """The Go original's README-style switch handler, ported line by line (a Go handler decodes
    numbers to float64: so does this one's echo)."""

    def handler(cmd: str, args: Any) -> Response:
        ran.append((cmd, args))
        if cmd == "ping":
            return Response.ok("pong")
        if cmd == "fail":
            return Response.fail(args["message"])
        if cmd == "config.set":
            return Response.ok()
        if cmd == "echo":
            return Response.ok(json.loads(json.dumps(args), parse_int=float))
        return Response.fail(f"handler: unknown command '{cmd}'")

    return Methods(handler=handler)


def frames(data: bytes) -> list[dict[str, Any]]:
    out = []
    while data:
        (n,) = struct.unpack(">I", data[:4])
        assert data[4:5] == b":"
        out.append(json.loads(data[5 : 5 + n]))
        data = data[5 + n :]
    return out


@pytest.fixture(scope="module")
def go_style() -> Any:
    ran: list[tuple[str, Any]] = []
    with short_tmpdir() as d, served(f"{d}/s", go_readme_handler(ran)) as handle:
        yield handle.path if hasattr(handle, "path") else f"{d}/s", ran


@pytest.mark.parametrize("name", FIXTURES)
def test_golden_go_request_gets_the_go_servers_reply_byte_for_byte(go_style: Any, name: str) -> None:
    path, ran = go_style
    request = (GOLDEN / f"{name}.request.bin").read_bytes()
    with LineClient(path) as c:
        c.send(request)
        reply = c.read_to_eof()  # close=true on the last frame: the server closes after its reply
    assert reply == (GOLDEN / f"{name}.reply.bin").read_bytes()
    assert frames(reply) == [f["json"] for f in _index()[name]["reply_frames"]]
    if name == "04-respond-false":  # nothing sent, and yet it ran
        wait_for(lambda: ("config.set", {"key": "level", "value": "debug"}) in ran, "config.set to run")


def _index() -> dict[str, Any]:
    return {f["name"]: f for f in json.loads((GOLDEN / "index.json").read_text())}


def registered_methods() -> Methods:
    m = Methods()

    @m.add
    def add(a: int, b: int) -> int:
        return a + b

    @m.add
    def crash() -> None:
        raise RuntimeError("secret internals")

    @m.add
    def refuse() -> Response:
        return Response.fail("not now", code=7, data={"retry": 3})

    @m.add
    def framing() -> str | None:
        return current_context().connection.framing

    return m


@pytest.fixture(scope="module")
def path() -> Any:
    with short_tmpdir() as d, served(f"{d}/s", registered_methods(), limits=Limits(max_message_size=4096)):
        yield f"{d}/s"


def go_call(path: str, cmd: str, args: Any = None, close: bool = True) -> dict[str, Any]:
    env = {
        "cmd": cmd,
        "args": args,
        "response": {"status": "", "error": "", "payload": ""},
        "respond": True,
        "close": close,
    }
    with LineClient(path) as c:
        c.send(frame(json.dumps(env).encode()))
        (reply,) = frames(c.read_to_eof())
    assert {k: reply[k] for k in ("cmd", "args", "respond", "close")} == {
        k: env[k] for k in ("cmd", "args", "respond", "close")
    }
    return reply["response"]  # type: ignore[no-any-return]


def test_go_envelope_onto_registered_methods(path: str) -> None:
    assert go_call(path, "add", {"a": 2, "b": 3}) == {"status": "success", "error": "", "payload": "5"}
    assert go_call(path, "framing") == {"status": "success", "error": "", "payload": "unixsock"}
    assert go_call(path, "no.such") == {
        "status": "failure",
        "error": "Method not found: no.such",
        "payload": "",
    }
    bad = go_call(path, "add", {"a": 1})
    assert bad["status"] == "failure", bad
    assert bad["error"].startswith("Invalid params"), bad
    crash = go_call(path, "crash")
    assert crash["status"] == "failure"
    assert "Traceback" not in crash["error"]
    assert "secret" not in crash["error"]
    assert go_call(path, "refuse") == {"status": "failure", "error": "not now", "payload": '{"retry":3}'}


def test_go_frame_over_the_limit_refused_and_the_connection_goes_on(path: str) -> None:
    with LineClient(path) as c:
        c.send(b"\x00\x10\x00\x00:" + b"x" * 0x100000)
        c.send(frame(b'{"cmd":"framing","respond":true,"close":true}'))
        too_big, ok = frames(c.read_to_eof())
    assert too_big["response"]["status"] == "failure"
    assert "exceeds the limit of 4096 bytes" in too_big["response"]["error"]
    assert ok["response"] == {"status": "success", "error": "", "payload": "unixsock"}


def lsp(obj: Any) -> bytes:
    body = json.dumps(obj).encode()
    return b"Content-Length: %d\r\n\r\n%b" % (len(body), body)


def read_lsp(sock: socket.socket, n: int) -> list[Any]:
    data, out = b"", []
    while len(out) < n:
        chunk = sock.recv(65536)
        assert chunk, f"EOF after {out}"
        data += chunk
        while b"\r\n\r\n" in data:
            head, _, rest = data.partition(b"\r\n\r\n")
            length = int(head.split(b":")[1])
            if len(rest) < length:
                break
            out.append(json.loads(rest[:length]))
            data = rest[length:]
    return out


def rpc(method: str, params: Any = None, rid: Any = None) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        req["params"] = params
    if rid is not None:
        req["id"] = rid
    return req


def test_lsp_calls_notifications_batches_errors(path: str) -> None:
    with LineClient(path) as c:
        c.send(
            lsp(rpc("add", [1, 2], 1))
            + lsp(rpc("add", [5, 5]))
            + lsp([rpc("framing", rid=2), rpc("nope", rid=3)])
        )
        c.send(
            lsp(rpc("add", [1], 4))
            + b"Content-Length: 5000\r\n\r\n"
            + b"x" * 5000
            + lsp(rpc("framing", rid=5))
        )
        one, batch, bad, big, five = read_lsp(c.sock, 5)
    assert one == {"jsonrpc": "2.0", "result": 3, "id": 1}
    assert sorted(batch, key=lambda a: a["id"]) == [
        {"jsonrpc": "2.0", "result": "lsp", "id": 2},
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found", "data": "nope"}, "id": 3},
    ]
    assert bad["error"]["code"] == -32602
    assert bad["id"] == 4
    assert big["error"]["code"] == -32001
    assert big["id"] is None
    assert five == {"jsonrpc": "2.0", "result": "lsp", "id": 5}


def test_lsp_broken_header_answered_then_closed(path: str) -> None:
    with LineClient(path) as c:
        c.send(b"Content-Length: twelve\r\n\r\n{}")
        (answer,) = read_lsp(c.sock, 1)
        assert c.read_to_eof() == b""
    assert answer["error"]["code"] == -32700
    assert "Content-Length is not a length" in answer["error"]["data"]


def test_json_seq_calls_notifications_errors(path: str) -> None:
    with LineClient(path) as c:
        for obj in (rpc("add", [1, 2], 1), rpc("add", [1, 1]), rpc("framing", rid=2), rpc("nope", rid=3)):
            c.sock.sendall(b"\x1e" + json.dumps(obj).encode() + b"\n")
        c.sock.sendall(b"\x1e{broken\n")
        c.shutdown_write()
        records = c.read_to_eof().split(b"\x1e")
    assert records[0] == b""
    assert all(r.endswith(b"\n") for r in records[1:])
    one, two, three, broken = (json.loads(r) for r in records[1:])
    assert (one["result"], two["result"], three["error"]["code"]) == (3, "json-seq", -32601)
    assert broken["error"]["code"] == -32700


def test_unknown_first_bytes_answered_and_logged(path: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "jrpc_unix.server")
    with LineClient(path) as c:
        c.send(b"GET / HTTP/1.1\r\n\r\n")
        answer = c.read_json()
    assert answer["error"]["code"] == -32700
    wait_for(
        lambda: "framing not recognised: first bytes 47 45 54 20 2f 20 48 54" in caplog.text, "the log line"
    )


def test_newline_connection_says_newline(path: str) -> None:
    with LineClient(path) as c:
        assert c.call("framing")["result"] == "newline"


@pytest.mark.parametrize("framing", ["newline", "lsp", "json-seq"])
def test_our_clients_in_each_framing(path: str, framing: str) -> None:
    with Client(path, timeout=TIMEOUT, framing=framing) as client:
        assert client.call("framing") == framing
        client.notify("add", 1, 1)
        assert client.batch(Call("add", 1, 2), Call("framing")) == [3, framing]
        with pytest.raises(RpcError, match="not now"):
            client.call("refuse")


@pytest.mark.parametrize("framing", ["lsp", "json-seq"])
async def test_trio_client_in_each_framing(path: str, framing: str) -> None:
    async with open_client(path, framing=framing) as client:
        assert await client.call("framing") == framing
        assert await client.call("add", 2, 2) == 4


@pytest.mark.parametrize("framing", ["lsp", "json-seq"])
def test_asyncio_client_in_each_framing(path: str, framing: str) -> None:
    async def main() -> None:
        async with asyncio.timeout(TIMEOUT), aio_open_client(path, framing=framing) as client:
            assert await client.call("framing") == framing
            assert await client.batch(Call("add", 2, 2), Call("framing")) == [4, framing]

    asyncio.run(main())


def test_unknown_framing_refused_by_name() -> None:
    with pytest.raises(
        ValueError, match="framing must be one of json-seq, lsp, newline, unixsock, not 'http'"
    ):
        Client("/nonexistent", framing="http")
    assert CLI_FRAMINGS == NAMES


SLOW_STARTS = {
    "undecided": b"Content-Len" + b"x" * 200,  # the framing itself not told yet
    "lsp": b"Content-Length: 40\r\n\r\n" + b"x" * 200,
    "unixsock": frame(b"x" * 200),
    "json-seq": b"\x1e" + b"x" * 200,
}


@pytest.mark.parametrize("framing", SLOW_STARTS)
async def test_a_message_trickling_in_is_cut_off_in_every_framing(
    sock_path: str, autojump_clock: trio.testing.MockClock, framing: str
) -> None:
    """The slow-message rule holds in every framing: each message (and the first bytes that
    tell the framing) must arrive whole within idle_timeout of its first byte."""
    limits = Limits(idle_timeout=1.0, shutdown_grace=2.0)
    async with (
        serving(sock_path, registered_methods(), limits=limits) as server,
        trio.open_nursery() as nursery,
    ):
        stream = await trio.open_unix_socket(sock_path)
        start = trio.current_time()
        nursery.start_soon(_trickle, stream, SLOW_STARTS[framing], 0.4)
        with trio.fail_after(TIMEOUT), contextlib.suppress(trio.BrokenResourceError):
            assert await stream.receive_some(1000) == b""
        assert 1.0 <= trio.current_time() - start <= 1.5
        await until(lambda: server.stats.connections_open == 0, "the slot to be freed")
        await stream.aclose()


async def _trickle(stream: trio.SocketStream, data: bytes, pause: float) -> None:
    try:
        for byte in data:
            await stream.send_all(bytes([byte]))
            await trio.sleep(pause)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass


def test_golden_copies_match_their_checksums() -> None:
    for line in (GOLDEN / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashlib.sha256((GOLDEN / name.lstrip("*")).read_bytes()).hexdigest() == digest, name
