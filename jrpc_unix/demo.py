"""The demo service's methods, and the guided tour ``jrpc-unix demo`` gives of them.

The methods live in the package so ``jrpc-unix demo`` and ``jrpc-unix serve
jrpc_unix.demo:methods SOCK`` work from any install; ``examples/demo_server.py``
runs them as a standalone service. The state they expose (a config and a counter) is this
module's.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any, TextIO

import trio

from ._response import Response
from ._service.context import current_context
from ._service.methods import Methods
from ._wire.fastjson import UnserializableError, dumps

__all__ = ["MAX_CONFIG_KEYS", "MAX_KEY_LENGTH", "MAX_VALUE_BYTES", "config", "methods", "tour"]

methods = Methods()

# Besides the built-in `stats` and `progress` topics, this service publishes its own.
methods.add_topic("config", "every configuration change: key, value, previous value")

# The live state this process exposes: a configuration and a counter.
config: dict[str, Any] = {"level": "info"}
counter = 0

# Any caller may set keys, so the configuration is bounded: at most 1,000 keys of up to 256
# characters, each value at most 16 KiB of JSON (~16 MiB in all, where 100,000 keys of 1 KiB
# took the service from 35 to 172 MiB before).
MAX_CONFIG_KEYS = 1000
MAX_KEY_LENGTH = 256
MAX_VALUE_BYTES = 16 * 1024
# Values that need no encoding to know they fit (a char is at most 6 bytes of JSON: \uXXXX).
_SCALARS = frozenset((int, float, bool, type(None)))
_SURELY_FITS = (MAX_VALUE_BYTES - 2) // 6


@methods.add
def ping() -> str:
    """Answer "pong": is the service alive?"""
    return "pong"


@methods.add
def echo(msg: Any) -> Any:
    """Return ``msg`` unchanged."""
    return msg


@methods.add
def subtract(minuend: float, subtrahend: float) -> float:
    """minuend - subtrahend (positional or named params)."""
    return minuend - subtrahend


@methods.add("sum")
def sum_(*numbers: float) -> float:
    """The sum of the positional params."""
    return sum(numbers)


@methods.add
def get_data() -> list[Any]:
    """A fixed answer from the JSON-RPC 2.0 specification's examples."""
    return ["hello", 5]


# The specification's examples send these as notifications; they accept anything.
@methods.add
def update(*args: Any, **kwargs: Any) -> None:
    """Accept anything (a spec example)."""


@methods.add
def notify_hello(*args: Any, **kwargs: Any) -> None:
    """Accept anything (a spec example)."""


@methods.add
def notify_sum(*args: Any, **kwargs: Any) -> None:
    """Accept anything (a spec example)."""


@methods.add
async def sleep(seconds: float) -> float:
    """Wait ``seconds`` without blocking other calls, then return ``seconds``."""
    await trio.sleep(seconds)
    return seconds


def _refusal(key: Any, value: Any) -> Response | None:
    """Why ``config.set`` must refuse to store this, as its FAIL answer; None if it may."""
    if type(key) is not str:
        return Response.fail(f"config keys are strings, not {type(key).__name__}")
    if len(key) > MAX_KEY_LENGTH:
        return Response.fail(f"config keys are at most {MAX_KEY_LENGTH} characters, not {len(key)}")
    if key not in config and len(config) >= MAX_CONFIG_KEYS:
        return Response.fail(
            f"config is full: at most {MAX_CONFIG_KEYS} keys (existing keys can still be changed)",
            data={"limit": MAX_CONFIG_KEYS},
        )
    if type(value) in _SCALARS or (type(value) is str and len(value) <= _SURELY_FITS):
        return None  # the common case costs no encoding (config.set is a benchmark's hot path)
    try:
        size = len(dumps(value))
    except UnserializableError:  # a JSON value from the wire always serializes; a Python caller's may not
        return Response.fail("a config value must be JSON")
    if size > MAX_VALUE_BYTES:
        return Response.fail(f"config values are at most {MAX_VALUE_BYTES} bytes of JSON, not {size}")
    return None


@methods.add("config.set", run_to_completion=True)
def config_set(key: str, value: Any) -> Response:
    """Set configuration ``key`` to ``value``; returns the previous value.

    At most 1,000 keys (256 characters each, values up to 16 KiB of JSON): FAIL beyond that.
    """
    refusal = _refusal(key, value)
    if refusal is not None:
        return refusal
    previous = config.get(key)
    config[key] = value
    current_context().server.publish("config", {"key": key, "value": value, "previous": previous})
    return Response.ok(previous)


@methods.add("config.get")
def config_get(key: str) -> Response:
    """The value of configuration ``key``; FAIL if there is no such key."""
    if key not in config:
        return Response.fail(f"unknown config key {key!r}", data={"known": sorted(config)})
    return Response.ok(config[key])


@methods.add("counter.incr")
def counter_incr() -> int:
    """Add one to the counter; returns the new value."""
    global counter
    counter += 1
    return counter


@methods.add("counter.get")
def counter_get() -> int:
    """The counter's value."""
    return counter


@methods.add
async def work(steps: int, delay: float = 0.1) -> dict[str, int]:
    """A long job: ``steps`` steps of ``delay`` seconds, reporting progress; cancellable."""
    ctx = current_context()
    for step in range(1, steps + 1):
        await trio.sleep(delay)
        ctx.progress(step, steps, f"step {step} of {steps}")
    return {"steps": steps}


@methods.add
def stats() -> dict[str, Any]:
    """Live counters of this server, plus the service's own state."""
    snapshot: dict[str, Any] = current_context().server.stats.snapshot()
    snapshot["service"] = {"counter": counter, "config_keys": len(config)}
    return snapshot


@methods.add
def fail(message: str) -> Response:
    """Answer with a FAIL Response carrying ``message`` (an application error)."""
    return Response.fail(message)


@methods.add
def crash() -> None:
    """Raise inside the handler: callers get -32603, the log gets the traceback."""
    raise RuntimeError("crash() was called")


# -- the guided tour (jrpc-unix demo) --------------------------------------------------------

_WIDTH = 150


class _ServerLog(logging.Handler):
    """Shows the server's warnings as one line each (its tracebacks stay out of the tour)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        self.write(f"     server log: {record.levelname} {record.getMessage()}")


def tour(timeout: float | None = 30.0, out: TextIO | None = None) -> int:
    """Start the demo service on a temporary socket, drive it, print what travels; clean up."""
    from ._client.blocking import Client
    from ._server.thread import serve_in_thread

    stream = out or sys.stdout

    def say(text: str = "") -> None:
        print(text, file=stream, flush=True)

    def wire(way: str, line: bytes) -> None:
        text = line.decode(errors="replace")
        arrow = "->" if way == "send" else "<-"
        say(f"     {arrow} {text if len(text) <= _WIDTH else text[: _WIDTH - 1] + '…'}")

    logger = logging.getLogger("jrpc_unix")
    handler = _ServerLog(say)
    saved_propagate = logger.propagate
    directory = tempfile.mkdtemp(prefix="jrpc-unix-demo-", dir="/tmp")
    path = os.path.join(directory, "demo.sock")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with serve_in_thread(path, methods), Client(path, timeout, trace=wire) as client:
            say(f"The demo service is listening on {path}")
            say("Each step shows the Python call, then the lines that travel: -> request, <- answer.")
            _steps(client, say)
        say()
        say("The service has stopped and its socket is gone. Try it yourself:")
        say("  jrpc-unix serve jrpc_unix.demo:methods /tmp/demo.sock &")
        say("  jrpc-unix call /tmp/demo.sock subtract 42 23")
        say("  jrpc-unix call /tmp/demo.sock config.get key=level")
        say("  jrpc-unix notify /tmp/demo.sock config.set key=level value=debug")
        say("  printf 'ping\\ncounter.incr\\n' | jrpc-unix batch /tmp/demo.sock")
        say("  jrpc-unix methods /tmp/demo.sock")
        say("""  echo '{"jsonrpc":"2.0","method":"ping","id":1}' | socat - UNIX-CONNECT:/tmp/demo.sock""")
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved_propagate
        shutil.rmtree(directory, ignore_errors=True)
    return 0


def _steps(client: Any, say: Callable[[str], None]) -> None:
    from ._errors import RpcError
    from ._wire.conversation import Call, Notify

    def step(title: str, code: str) -> None:
        say("")
        say(f"{title}\n  >>> {code}")

    def shows(value: Any) -> None:
        say(f"  = {value!r}")

    step("1. Is it alive?", "client.call('ping')")
    shows(client.call("ping"))
    step("2. Params by position, then by name", "client.call('subtract', 42, 23)")
    shows(client.call("subtract", 42, 23))
    say("  >>> client.call('subtract', minuend=42, subtrahend=23)")
    shows(client.call("subtract", minuend=42, subtrahend=23))
    step(
        "3. A notification changes state; nothing is answered",
        "client.notify('config.set', key='level', value='debug')",
    )
    client.notify("config.set", key="level", value="debug")
    say("     (no answer: a notification never gets one)")
    say("  >>> client.call('config.get', key='level')   # sent after it, so it sees its effect")
    shows(client.call("config.get", key="level"))
    items = [Call("counter.incr"), Call("counter.incr"), Notify("notify_hello", 7), Call("get_data")]
    step(
        "4. A batch: several requests in one message, answers matched by id",
        f"client.batch({', '.join(map(repr, items))})",
    )
    shows(client.batch(*items))
    say("")
    say("5. Errors come back as RpcError, printed as [code] message")
    errors: list[tuple[str, dict[str, Any]]] = [
        ("no.such.method", {}),
        ("config.get", {"key": "colour"}),
        ("crash", {}),
    ]
    for method, kwargs in errors:
        say(f"  >>> client.call{repr(Call(method, **kwargs))[4:]}")
        try:
            client.call(method, **kwargs)
        except RpcError as exc:
            say(f"  raised RpcError: {exc}" + (f"  data={exc.data!r}" if exc.data is not None else ""))
    step("6. Live figures of the running service", "client.call('stats')")
    figures = client.call("stats")
    server = figures.get("server", figures)
    say(
        f"  calls={server.get('calls')} notifications={server.get('notifications')} "
        f"errors={server.get('errors')} service={figures.get('service')}"
    )
    step("7. The service describes itself (OpenRPC)", "client.call('rpc.discover')")
    names = [m["name"] for m in client.call("rpc.discover")["methods"]]
    say(f"  {len(names)} methods: {', '.join(names)}")
