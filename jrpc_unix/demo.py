"""The demo service: the reference set of methods every jrpc-unix doc, test and benchmark drives.

Public (its path ``jrpc_unix.demo:methods`` is documented), so ``jrpc-unix serve
jrpc_unix.demo:methods SOCK`` and ``jrpc-unix demo`` (whose guided tour is the CLI's:
``jrpc_unix/_cli/tour.py``) work from any install; ``examples/demo_server.py`` runs it as a
standalone service. The state it exposes (a config, a counter and typed settings) is this
module's.

Two ways to reconfigure it, on purpose: ``config.set``/``config.get`` are a hand-written handler
over a free-form dict (copy them for a handler of your own: the JSON-RPC examples and existing
clients use them); ``settings.*`` are :class:`DemoSettings`, declared with type hints and served
by the library, with validation, all-or-nothing changes, dry runs, history, revert and a file
(copy these to make a service reconfigurable: specs/settings.md).

Its ``async def`` handlers sleep with whichever loop awaits them (:func:`_sleep`), so the same
service runs under trio and as an asyncio program's guest (``jrpc_unix.aio``, where ``async
def`` handlers are asyncio coroutines).
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import sniffio
import trio

from ._response import Response
from ._service.access import Access
from ._service.context import current_context
from ._service.methods import Methods
from ._service.settings import setting
from ._service.settings_methods import Settings
from ._wire.fastjson import UnserializableError, dumps

__all__ = [
    "MAX_CONFIG_KEYS", "MAX_KEY_LENGTH", "MAX_VALUE_BYTES", "DemoSettings", "config", "methods", "settings",
]  # fmt: skip

methods = Methods()

#: The demo's own logger, whose level the ``log_level`` setting changes live.
log = logging.getLogger("jrpc_unix.demo")


def _set_log_level(level: str) -> None:
    log.setLevel(level.upper())
    log.info("log level is now %s", level)


class DemoSettings(Settings):
    """The demo's typed settings, served as ``settings.*`` (specs/settings.md)."""

    log_level: Literal["debug", "info", "warning", "error"] = setting(
        "info", description="the demo logger's level, changed live", on_change=_set_log_level
    )
    greeting: str = setting("hello", min_length=1, max_length=64, description="what the demo greets with")
    workers: int = setting(4, ge=1, le=64, description="worker count")
    rate_limit: float = setting(0.0, ge=0, description="calls per second; 0: unlimited")
    api_token: str = setting("", secret=True, access=Access.ADMIN, description="a secret: admin only")
    listen_backlog: int = setting(
        128, ge=1, restart_required=True, description="the listen backlog (takes effect at the next start)"
    )


#: The live settings; ``examples/demo_server.py --settings-file FILE`` loads and persists them.
settings = DemoSettings()

# Besides the built-in `stats` and `progress` topics, this service publishes its own.
methods.add_topic("config", "every configuration change: key, value, previous value")

# The live state this process exposes: a configuration and a counter.
config: dict[str, Any] = {"level": "info"}
counter = 0

# Any caller may set keys, so the configuration is bounded: at most 1,000 keys of up to 256
# characters, each value at most 16 KiB of JSON (~16 MiB in all; what unbounded keys cost:
# specs/performance.md).
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


async def _sleep(seconds: float) -> None:
    """Sleep on the loop running this handler: trio's, or asyncio's under ``jrpc_unix.aio``."""
    if sniffio.current_async_library() == "asyncio":
        import asyncio  # loaded already: only an asyncio program gets here

        await asyncio.sleep(seconds)
    else:
        await trio.sleep(seconds)


@methods.add
async def sleep(seconds: float) -> float:
    """Wait ``seconds`` without blocking other calls, then return ``seconds``."""
    await _sleep(seconds)
    return seconds


def _refusal(key: str, value: Any) -> Response | None:
    """Why ``config.set`` must refuse to store this, as its FAIL answer; None if it may."""
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
        await _sleep(delay)
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


settings.mount(methods)  # last: the demo's own methods and topics come first in listings
