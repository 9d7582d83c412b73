"""Shared test helpers: short socket dirs, test servers, raw line clients, the spec's examples.

Every read here is bounded by a timeout, so a server bug makes a test fail instead of hang.
Nothing sleeps and hopes: a server is "up" once it says it listens, answers are awaited line by
line, and any other wait polls a real condition with :func:`wait_for` (the one bounded wait;
:func:`until` is its trio twin for in-process servers).

One way to start each kind of test server:

* a process: :class:`ServerProcess` (any command line), :class:`DemoProcess` (the demo service
  on a path of the test's choosing) or :func:`demo_server` (the demo in a fresh directory; the
  ``demo`` and ``shared_demo`` fixtures);
* a thread of the test process: :func:`helpers.ops.served`;
* a task in the test's own trio run: :func:`serving`;
* an asyncio (or uvloop) program's guest, on a loop in a thread: :func:`helpers.aio.served_on_asyncio`
  (``DemoProcess(..., host="asyncio")`` runs the demo that way as a process).

"Figures" always means a process's RSS, descriptors and threads (:func:`helpers.ops.figures`);
what a server counts is its :func:`server_stats`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from itertools import pairwise
from pathlib import Path
from types import ModuleType
from typing import Any

import trio

from jrpc_unix import Limits, Server

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "demo_server.py"

#: Upper bound for any single wait in a test; generous, it only matters when something is broken.
TIMEOUT = 10.0


@contextlib.contextmanager
def short_tmpdir() -> Iterator[str]:
    """A private directory in /tmp with a short path (sun_path is 108 bytes)."""
    path = tempfile.mkdtemp(prefix="ju", dir="/tmp")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# -- the demo service as a real process -----------------------------------------------------


@functools.cache
def demo_module() -> ModuleType:
    """examples/demo_server.py imported (not run), for its ``methods`` in an in-process server."""
    spec = importlib.util.spec_from_file_location("jrpc_unix_demo_server", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- bounded waiting and server processes ------------------------------------------------------


def wait_for(cond: Callable[[], Any], what: str, timeout: float = TIMEOUT, interval: float = 0.005) -> Any:
    """Poll ``cond`` until it returns something truthy (returned), or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class ServerProcess:
    """A server subprocess (the demo, the CLI, a wrapper); up when ``ready()`` holds."""

    def __init__(
        self,
        argv: list[str],
        log_path: str,
        ready: Callable[[], bool],
        *,
        env: Mapping[str, str] | None = None,
        pass_fds: tuple[int, ...] = (),
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=str(ROOT),
            env=dict(env) if env is not None else None,
            pass_fds=pass_fds,
            preexec_fn=preexec_fn,
        )
        try:
            wait_for(lambda: self.proc.poll() is not None or ready(), "the server to be ready")
        except BaseException:
            self.close()
            raise
        if self.proc.poll() is not None:
            self.close()
            raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text(errors="replace")

    def signal(self, signum: int = signal.SIGTERM) -> int:
        """Send ``signum``; the exit code (bounded wait)."""
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=TIMEOUT)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=TIMEOUT)
        self._log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DemoProcess(ServerProcess):
    """``python examples/demo_server.py PATH`` as a subprocess, up once it logs that it listens.

    (Not once the file exists: a stale file may be there before the server replaces it.)
    """

    def __init__(self, path: str, log_path: str, host: str = "trio", **options: Any) -> None:
        self.path = path
        said = f"listening on {path}".encode()
        flags = [] if host == "trio" else [f"--{host}"]  # --asyncio, --uvloop: jrpc_unix.aio
        super().__init__(
            [sys.executable, str(DEMO), *flags, path],
            log_path,
            lambda: said in Path(log_path).read_bytes(),
            **options,
        )

    def terminate(self) -> int:
        """SIGTERM, then the exit code (bounded wait)."""
        return self.signal(signal.SIGTERM)


@contextlib.contextmanager
def demo_server(host: str = "trio") -> Iterator[DemoProcess]:
    """The demo in a fresh directory, hosted by trio (``run``) or asyncio/uvloop (``jrpc_unix.aio``)."""
    with short_tmpdir() as d:
        demo = DemoProcess(os.path.join(d, "demo.sock"), os.path.join(d, "demo.log"), host)
        try:
            yield demo
        finally:
            demo.close()


# -- a blocking raw line client (stdlib socket) ---------------------------------------------


class LineClient:
    """Raw bytes over a UNIX socket, read back line by line; every read has a timeout."""

    def __init__(self, path: str, timeout: float = TIMEOUT) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self._buf = b""

    def send(self, data: bytes | str | dict[str, Any] | list[Any]) -> None:
        if isinstance(data, (dict, list)):
            data = json.dumps(data) + "\n"
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def readline(self) -> bytes:
        """The next line without its newline; fails on EOF or timeout."""
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; partial data {self._buf!r}")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def read_json(self) -> Any:
        return json.loads(self.readline())

    def call(self, method: str, params: Any = None, rid: Any = 1) -> Any:
        req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params is not None:
            req["params"] = params
        self.send(req)
        return self.read_json()

    def shutdown_write(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def read_to_eof(self) -> bytes:
        """Everything until the server closes (bounded by the socket timeout)."""
        data = self._buf
        self._buf = b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def server_stats(path: str) -> dict[str, Any]:
    """What the server at ``path`` counts (``rpc.stats``), over a fresh connection."""
    with LineClient(path) as c:
        stats: dict[str, Any] = c.call("rpc.stats")["result"]
    return stats


# -- a trio raw line client -----------------------------------------------------------------


class TrioLineClient:
    """The trio twin of LineClient, for in-process servers; reads are bounded by fail_after."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self._buf = bytearray()

    @classmethod
    async def connect(cls, path: str) -> TrioLineClient:
        return cls(await trio.open_unix_socket(path))

    async def send(self, data: bytes | str | dict[str, Any] | list[Any]) -> None:
        if isinstance(data, (dict, list)):
            data = json.dumps(data) + "\n"
        if isinstance(data, str):
            data = data.encode()
        await self.stream.send_all(data)

    async def readline(self) -> bytes:
        """The next line without its newline; fails on EOF, or after TIMEOUT seconds."""
        with trio.fail_after(TIMEOUT):
            while (nl := self._buf.find(b"\n")) < 0:
                chunk = await self.stream.receive_some(65536)
                if not chunk:
                    raise EOFError(f"connection closed; partial data {bytes(self._buf)!r}")
                self._buf += chunk
        line = bytes(self._buf[:nl])
        del self._buf[: nl + 1]
        return line

    async def read_json(self) -> Any:
        return json.loads(await self.readline())

    async def call(self, method: str, params: Any = None, rid: Any = 1) -> Any:
        await self.send(request(method, params, rid))
        return await self.read_json()

    async def read_to_eof(self) -> bytes:
        """Everything until the server closes (at most TIMEOUT seconds)."""
        data = bytes(self._buf)
        self._buf.clear()
        with trio.fail_after(TIMEOUT):
            while chunk := await self.stream.receive_some(65536):
                data += chunk
        return data

    async def send_eof(self) -> None:
        await self.stream.send_eof()

    async def aclose(self) -> None:
        await self.stream.aclose()


@contextlib.asynccontextmanager
async def serving(path: str, methods: Any, **options: Any) -> AsyncIterator[Server]:
    """A Server listening on ``path`` in this trio run; stopped (gracefully) on exit."""
    options.setdefault("limits", Limits(shutdown_grace=2.0))
    async with trio.open_nursery() as nursery:
        server: Server = await nursery.start(Server(methods, **options).serve, path)
        try:
            yield server
        finally:
            server.stop()


async def until(
    cond: Callable[[], Any],
    what: str,
    timeout: float = TIMEOUT,  # noqa: ASYNC109 - a test's bound, turned into a readable failure
    tick: float = 0.01,
) -> Any:
    """The trio twin of :func:`wait_for`: poll ``cond`` every ``tick`` (virtual time under
    ``autojump_clock``, where the whole wait costs nothing) until it holds, or fail."""
    with trio.move_on_after(timeout):
        while True:
            value = cond()
            if value:
                return value
            await trio.sleep(tick)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def request(method: str, params: Any = None, rid: Any = None, *, notify: bool = False) -> dict[str, Any]:
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        req["params"] = params
    if not notify:
        req["id"] = rid
    return req


def notification(method: str, params: Any = None) -> dict[str, Any]:
    return request(method, params, notify=True)


def lines(*objs: Any) -> bytes:
    """Several requests as newline-delimited compact JSON."""
    return b"".join(json.dumps(o, separators=(",", ":")).encode() + b"\n" for o in objs)


def ok(result: Any, rid: Any) -> dict[str, Any]:
    """The answer a successful call with id ``rid`` gets."""
    return {"jsonrpc": "2.0", "result": result, "id": rid}


def cut(data: bytes, points: Iterable[int]) -> list[bytes]:
    """``data`` cut at ``points`` (taken modulo its length + 1): the pieces a reader might get,
    empty ones included (a read may return nothing new)."""
    edges = [0, *sorted({p % (len(data) + 1) for p in points}), len(data)]
    return [data[a:b] for a, b in pairwise(edges)]


# -- the JSON-RPC 2.0 specification's section 7 examples -------------------------------------

#: (name, the request line exactly as the spec writes it (batches joined onto one line),
#:  the documented answer: a dict, a list (a batch, any order), or None for "no bytes at all").
SPEC_EXAMPLES: list[tuple[str, str, Any]] = [
    (
        "positional-1",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}',
        {"jsonrpc": "2.0", "result": 19, "id": 1},
    ),
    (
        "positional-2",
        '{"jsonrpc": "2.0", "method": "subtract", "params": [23, 42], "id": 2}',
        {"jsonrpc": "2.0", "result": -19, "id": 2},
    ),
    (
        "named-1",
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"subtrahend": 23, "minuend": 42}, "id": 3}',
        {"jsonrpc": "2.0", "result": 19, "id": 3},
    ),
    (
        "named-2",
        '{"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 42, "subtrahend": 23}, "id": 4}',
        {"jsonrpc": "2.0", "result": 19, "id": 4},
    ),
    ("notification-update", '{"jsonrpc": "2.0", "method": "update", "params": [1,2,3,4,5]}', None),
    ("notification-foobar", '{"jsonrpc": "2.0", "method": "foobar"}', None),
    (
        "non-existent-method",
        '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "1"},
    ),
    (
        "invalid-json",
        '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    (
        "invalid-request-object",
        '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
    ),
    (
        "batch-invalid-json",
        '[ {"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"}, {"jsonrpc": "2.0", "method" ]',
        {"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": None},
    ),
    (
        "empty-array",
        "[]",
        {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
    ),
    (
        "invalid-batch-one",
        "[1]",
        [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}],
    ),
    (
        "invalid-batch-three",
        "[1,2,3]",
        [{"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None}] * 3,
    ),
    (
        "mixed-batch",
        "["
        '{"jsonrpc": "2.0", "method": "sum", "params": [1,2,4], "id": "1"},'
        '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]},'
        '{"jsonrpc": "2.0", "method": "subtract", "params": [42,23], "id": "2"},'
        '{"foo": "boo"},'
        '{"jsonrpc": "2.0", "method": "foo.get", "params": {"name": "myself"}, "id": "5"},'
        '{"jsonrpc": "2.0", "method": "get_data", "id": "9"}'
        "]",
        [
            {"jsonrpc": "2.0", "result": 7, "id": "1"},
            {"jsonrpc": "2.0", "result": 19, "id": "2"},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "5"},
            {"jsonrpc": "2.0", "result": ["hello", 5], "id": "9"},
        ],
    ),
    (
        "all-notification-batch",
        '[{"jsonrpc": "2.0", "method": "notify_sum", "params": [1,2,4]},'
        '{"jsonrpc": "2.0", "method": "notify_hello", "params": [7]}]',
        None,
    ),
]


def normalize(answer: Any, expected: Any) -> Any:
    """``answer`` with what the spec leaves open removed: ``data`` where the spec shows none.

    Everything else (``jsonrpc``, ``result``, ``code``, ``message``, ``id`` and the set of members)
    must then match exactly.
    """
    if isinstance(answer, dict) and isinstance(expected, dict):
        out = dict(answer)
        if isinstance(out.get("error"), dict) and isinstance(expected.get("error"), dict):
            err = dict(out["error"])
            if "data" not in expected["error"]:
                err.pop("data", None)
            out["error"] = err
        return out
    return answer


def _key(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def assert_answer(actual: Any, expected: Any) -> None:
    """Compare an answer with the documented one; batches ignoring order."""
    if isinstance(expected, list):
        assert isinstance(actual, list), f"expected a batch answer, got {actual!r}"
        assert len(actual) == len(expected), actual
        # Match each actual answer to an expected one, order-insensitive.
        remaining = list(expected)
        for item in actual:
            for i, want in enumerate(remaining):
                if normalize(item, want) == want and _same_types(item, want):
                    del remaining[i]
                    break
            else:
                raise AssertionError(f"unexpected answer {item!r} in {actual!r}; wanted {expected!r}")
        assert not remaining
    else:
        assert normalize(actual, expected) == expected, actual
        assert _same_types(actual, expected), actual


def _same_types(actual: Any, expected: Any) -> bool:
    """1 == 1.0 == True in Python; JSON answers must also agree on the kinds of values."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(_same_types(actual.get(k), v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and all(map(_same_types, actual, expected))
    return type(actual) is type(expected)


def assert_answers_unordered(answers: list[object], wanted: list[object]) -> None:
    """Each documented answer matched by exactly one actual answer (calls may answer out of order)."""
    assert len(answers) == len(wanted), answers
    remaining = list(answers)
    for want in wanted:
        for i, got in enumerate(remaining):
            try:
                assert_answer(got, want)
            except AssertionError:
                continue
            del remaining[i]
            break
        else:
            raise AssertionError(f"no answer matches {want!r}; got {answers!r}")
