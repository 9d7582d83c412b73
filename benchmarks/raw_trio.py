"""The raw trio baseline: the ceiling for any trio JSON-RPC server on this machine.

Newline framing, stdlib ``json``, no JSON-RPC library, no limits, no ordering rules: each read is
split at its last newline, every complete line is answered, and the answers of one read go out in
one ``send_all``. Methods: ``ping``, ``echo(msg)``, ``config.set(key, value)`` (as notification
or call), ``config.get(key)`` and ``stats`` (how many ``config.set`` ran, so the harness can prove
that no notification was lost).

    python benchmarks/raw_trio.py SOCKET_PATH
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any

import trio

config: dict[str, Any] = {}
applied = 0  # config.set calls and notifications run


def ping() -> str:
    return "pong"


def echo(msg: Any) -> Any:
    return msg


def config_set(key: str, value: Any) -> Any:
    global applied
    applied += 1
    previous = config.get(key)
    config[key] = value
    return previous


def config_get(key: str) -> Any:
    return config.get(key)


def stats() -> dict[str, int]:
    return {"notifications": applied}


METHODS: dict[str, Callable[..., Any]] = {
    "ping": ping,
    "echo": echo,
    "config.set": config_set,
    "config.get": config_get,
    "stats": stats,
}

_encode = json.JSONEncoder(separators=(",", ":")).encode


def _error(rid: Any, code: int, message: str) -> bytes:
    return _encode({"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": rid}).encode()


def handle(line: bytes) -> bytes | None:
    """The answer to one request line (without its newline), or None for a notification."""
    try:
        req = json.loads(line)
    except ValueError:
        return _error(None, -32700, "Parse error")
    if type(req) is not dict or req.get("jsonrpc") != "2.0" or type(req.get("method")) is not str:
        return _error(req.get("id") if type(req) is dict else None, -32600, "Invalid Request")
    notification = "id" not in req
    func = METHODS.get(req["method"])
    if func is None:
        return None if notification else _error(req["id"], -32601, "Method not found")
    params = req.get("params")
    try:
        if params is None:
            result = func()
        elif type(params) is dict:
            result = func(**params)
        else:
            result = func(*params)
    except TypeError:
        return None if notification else _error(req["id"], -32602, "Invalid params")
    if notification:
        return None
    return _encode({"jsonrpc": "2.0", "result": result, "id": req["id"]}).encode()


async def serve_connection(stream: trio.SocketStream) -> None:
    """Answer complete lines as they arrive until the peer closes."""
    buf = bytearray()
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return
            if not data:
                return
            buf += data
            end = buf.rfind(b"\n")
            if end < 0:
                continue
            answers = [
                a for line in buf[:end].split(b"\n") if line.strip() and (a := handle(line)) is not None
            ]
            del buf[: end + 1]
            if answers:
                answers.append(b"")
                try:
                    await stream.send_all(b"\n".join(answers))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def main(path: str) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(4096)
    await trio.serve_listeners(serve_connection, [trio.SocketListener(sock)])


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: raw_trio.py SOCKET_PATH")
    with contextlib.suppress(FileNotFoundError):  # a stale socket file from an earlier run
        os.unlink(sys.argv[1])
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main, sys.argv[1])
