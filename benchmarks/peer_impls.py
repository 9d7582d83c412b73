"""The peers of ``benchmarks/peers.py``: each one's server and its own Python client, one small call.

Every peer serves the same call, ``config.get("level")`` answering the string ``"info"``, on a
UNIX socket, the way its documentation shows; its client makes that call on one connection,
one call at a time. ``python benchmarks/peer_impls.py PEER SOCK`` serves (run by peers.py);
``client(PEER, SOCK)`` gives a function that makes one call and returns the answer's string.
The third-party packages are the ``bench`` extra (``pip install '.[bench]'``); each is imported
only by its own peer.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import socketserver
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

KEY, VALUE = "level", "info"
CONFIG = {KEY: VALUE}
# peer -> (title, the modules its server and client need, comma-separated; None: ours or the stdlib)
PEERS: dict[str, tuple[str, str | None]] = {
    "jrpc": ("jrpc-unix (blocking Client)", None),
    "stdlib": ("stdlib floor (socketserver + newline JSON)", None),
    "varlink": ("python-varlink", "varlink"),
    "grpc": ("grpcio (sync server)", "grpc"),
    "grpc-aio": ("grpcio (grpc.aio server)", "grpc"),
    "pyro5": ("Pyro5", "Pyro5"),
    "rpyc": ("RPyC", "rpyc"),
    "fastapi": ("FastAPI on uvicorn --uds", "fastapi,uvicorn"),
}
VARLINK_INTERFACE = """interface org.example.bench
method Get(key: string) -> (value: string)
"""
GRPC_SERVICE, GRPC_METHOD = "bench.Config", "Get"

Call = Callable[[], str]


# -- servers ------------------------------------------------------------------------------------


def serve_jrpc(path: str) -> None:
    """The product as an operator runs it: the demo service under ``jrpc-unix serve``."""
    from jrpc_unix._cli.main import run

    sys.argv = ["jrpc-unix", "serve", "jrpc_unix.demo:methods", path, "--log-level", "warning"]
    run()


class _LineHandler(socketserver.StreamRequestHandler):
    """Newline JSON-RPC with nothing else: parse, look the key up, answer."""

    def handle(self) -> None:
        for line in self.rfile:
            req = json.loads(line)
            answer = {"jsonrpc": "2.0", "id": req["id"], "result": CONFIG[req["params"]["key"]]}
            self.wfile.write(json.dumps(answer).encode() + b"\n")


def serve_stdlib(path: str) -> None:
    with socketserver.ThreadingUnixStreamServer(path, _LineHandler) as server:
        server.daemon_threads = True
        server.serve_forever()


def serve_varlink(path: str) -> None:
    import varlink

    folder = tempfile.mkdtemp(prefix="peer-varlink-")
    Path(folder, "org.example.bench.varlink").write_text(VARLINK_INTERFACE)
    service = varlink.Service(vendor="bench", product="bench", version="1", interface_dir=folder)

    @service.interface("org.example.bench")
    class Bench:
        def Get(self, key: str) -> dict[str, str]:
            return {"value": CONFIG[key]}

    class Handler(varlink.RequestHandler):  # type: ignore[misc]
        pass

    Handler.service = service
    with varlink.ThreadingServer(f"unix:{path}", Handler) as server:
        server.serve_forever()


def _grpc_get(request: bytes, context: Any) -> bytes:
    return CONFIG[request.decode()].encode()


def _grpc_handler(func: Callable[..., Any]) -> Any:
    """A generic handler with bytes in and out: no code generated, no protobuf on the path."""
    import grpc

    method = grpc.unary_unary_rpc_method_handler(func)
    return grpc.method_handlers_generic_handler(GRPC_SERVICE, {GRPC_METHOD: method})


def serve_grpc(path: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((_grpc_handler(_grpc_get),))
    server.add_insecure_port(f"unix:{path}")
    server.start()
    server.wait_for_termination()


def serve_grpc_aio(path: str) -> None:
    import asyncio

    import grpc

    async def get(request: bytes, context: Any) -> bytes:
        return _grpc_get(request, context)

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_grpc_handler(get),))
        server.add_insecure_port(f"unix:{path}")
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def serve_pyro5(path: str) -> None:
    import Pyro5.api

    @Pyro5.api.expose
    class Config:
        def get(self, key: str) -> str:
            return CONFIG[key]

    with Pyro5.api.Daemon(unixsocket=path) as daemon:
        daemon.register(Config(), "config")
        daemon.requestLoop()


def serve_rpyc(path: str) -> None:
    import rpyc
    from rpyc.utils.server import ThreadedServer

    class ConfigService(rpyc.Service):  # type: ignore[misc]
        def exposed_get(self, key: str) -> str:
            return CONFIG[key]

    ThreadedServer(ConfigService, socket_path=path).start()


def serve_fastapi(path: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/config/{key}")
    async def get(key: str) -> str:  # async: no thread-pool hop, the cheaper way to write it
        return CONFIG[key]

    uvicorn.run(app, uds=path, log_level="warning", access_log=False)


# -- clients ------------------------------------------------------------------------------------


def client_jrpc(path: str) -> Call:
    from jrpc_unix import Client

    client = Client(path)
    return lambda: client.call("config.get", KEY)  # type: ignore[no-any-return]


def client_stdlib(path: str) -> Call:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    state = {"id": 0, "buf": b""}

    def call() -> str:
        state["id"] += 1
        req = {"jsonrpc": "2.0", "method": "config.get", "params": {"key": KEY}, "id": state["id"]}
        sock.sendall(json.dumps(req).encode() + b"\n")
        buf = state["buf"]
        while (end := buf.find(b"\n")) == -1:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        state["buf"] = buf[end + 1 :]
        return json.loads(buf[:end])["result"]  # type: ignore[no-any-return]

    return call


def client_varlink(path: str) -> Call:
    import varlink

    conn = varlink.Client(address=f"unix:{path}").open("org.example.bench")
    return lambda: conn.Get(KEY)["value"]  # type: ignore[no-any-return]


def client_grpc(path: str) -> Call:
    import grpc

    stub = grpc.insecure_channel(f"unix:{path}").unary_unary(f"/{GRPC_SERVICE}/{GRPC_METHOD}")
    return lambda: stub(KEY.encode()).decode()  # type: ignore[no-any-return]


def client_pyro5(path: str) -> Call:
    import Pyro5.api

    proxy = Pyro5.api.Proxy(f"PYRO:config@./u:{path}")
    return lambda: proxy.get(KEY)  # type: ignore[no-any-return]


def client_rpyc(path: str) -> Call:
    from rpyc.utils.factory import unix_connect

    get = unix_connect(path).root.get  # bound once: each call is then one round trip
    return lambda: get(KEY)  # type: ignore[no-any-return]


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.unix_path)


def client_fastapi(path: str) -> Call:
    conn = _UnixHTTPConnection(path)

    def call() -> str:
        conn.request("GET", f"/config/{KEY}")
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
        return json.loads(body)  # type: ignore[no-any-return]

    return call


SERVE: dict[str, Callable[[str], None]] = {
    "jrpc": serve_jrpc,
    "stdlib": serve_stdlib,
    "varlink": serve_varlink,
    "grpc": serve_grpc,
    "grpc-aio": serve_grpc_aio,
    "pyro5": serve_pyro5,
    "rpyc": serve_rpyc,
    "fastapi": serve_fastapi,
}
CLIENT: dict[str, Callable[[str], Call]] = {
    "jrpc": client_jrpc,
    "stdlib": client_stdlib,
    "varlink": client_varlink,
    "grpc": client_grpc,
    "grpc-aio": client_grpc,
    "pyro5": client_pyro5,
    "rpyc": client_rpyc,
    "fastapi": client_fastapi,
}


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    SERVE[sys.argv[1]](sys.argv[2])
