"""``jrpc-unix demo``: start the demo service, drive it step by step, print what travels.

The service is :mod:`jrpc_unix.demo`'s; this is only its guided tour, for a newcomer at a
terminal. It runs the service in a thread on a socket in a fresh ``/tmp`` directory and drives
it with the blocking client, whose ``trace`` hook prints every line sent and received.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any, TextIO

from .._client.blocking import Client
from .._errors import RpcError
from .._server.thread import serve_in_thread
from .._wire.requests import Call, Notify
from ..demo import methods
from .exits import EXIT_OK

__all__ = ["tour"]

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
        say("  jrpc-unix set /tmp/demo.sock workers=8 --dry-run; jrpc-unix settings /tmp/demo.sock")
        say("""  echo '{"jsonrpc":"2.0","method":"ping","id":1}' | socat - UNIX-CONNECT:/tmp/demo.sock""")
    finally:
        logger.removeHandler(handler)
        logger.propagate = saved_propagate
        shutil.rmtree(directory, ignore_errors=True)
    return EXIT_OK


def _steps(client: Client, say: Callable[[str], None]) -> None:
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
    # (dry runs and refusals only: the demo's settings are this process's, and stay as they are)
    code = "client.call('settings.set', values={'workers': 8, 'log_level': 'debug'}, dry_run=True)"
    step("8. Typed settings: checked on the way in, changed all or nothing (a dry run here)", code)
    shows(client.call("settings.set", values={"workers": 8, "log_level": "debug"}, dry_run=True))
    say("  >>> client.call('settings.set', values={'workers': 0, 'log_level': 'loud'})")
    try:
        client.call("settings.set", values={"workers": 0, "log_level": "loud"})
    except RpcError as exc:
        say(f"  raised RpcError: {exc}  data={exc.data!r}  (nothing changed)")
