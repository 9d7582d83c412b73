"""The reference jrpc-unix service: a process you can steer and watch through a UNIX socket.

    python examples/demo_server.py /tmp/demo.sock

Then, from another shell::

    echo '{"jsonrpc":"2.0","method":"ping","id":1}' | socat - UNIX-CONNECT:/tmp/demo.sock

It runs until SIGTERM or SIGINT, then lets in-flight calls finish, removes the socket file and
exits 0. Tests, benchmarks and the documentation all drive this service.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import trio

from jrpc_unix import Methods, Response, current_context, run

methods = Methods()

# Besides the built-in `stats` and `progress` topics, this service publishes its own.
TOPICS = {"config": "every configuration change: key, value, previous value"}

# The live state this process exposes: a configuration and a counter.
config: dict[str, Any] = {"level": "info"}
counter = 0


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


@methods.add("config.set", run_to_completion=True)
def config_set(key: str, value: Any) -> Response:
    """Set configuration ``key`` to ``value``; returns the previous value."""
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


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: demo_server.py SOCKET_PATH", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    run(argv[0], methods, topics=TOPICS)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
