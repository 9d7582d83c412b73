"""The micro-measurements behind the code shapes listed in specs/performance.md, re-runnable.

    python benchmarks/micro.py            # every row: the shape kept, the obvious alternative
    python benchmarks/micro.py --only ok  # rows whose name contains "ok"
    python benchmarks/micro.py --quick    # each row once, figures meaningless (what CI runs)

Each row times the shape the code uses against the one a reader would "clean it up" into, on
this interpreter, and prints both and their ratio. When a Python upgrade makes a row's
alternative as cheap as the shape, the shape may go: that is the point of keeping this script.
Times are the best of 5 repeats (timeit's advice: the minimum is the least disturbed); start-up
rows run fresh interpreters and print medians. Standard library only, plus jrpc_unix itself.
"""

from __future__ import annotations

import argparse
import contextvars
import statistics
import subprocess
import sys
import threading
import timeit
from collections.abc import Callable
from typing import Any

#: A row's measurement: (the shape's cost, the alternative's cost, the unit).
Measure = Callable[[], tuple[float, float, str]]
ROWS: dict[str, Measure] = {}
#: Repeats of a per-operation timing, and fresh interpreters per cold timing (--quick: 1 each).
REPEATS = {"timeit": 5, "runs": 31}


def row(name: str) -> Callable[[Measure], Measure]:
    def register(fn: Measure) -> Measure:
        ROWS[name] = fn
        return fn

    return register


def per_op_ns(stmt: str, setup: str = "pass", scope: dict[str, Any] | None = None) -> float:
    timer = timeit.Timer(stmt, setup, globals=scope)
    number = timer.autorange()[0] if REPEATS["timeit"] > 1 else 1
    return min(timer.repeat(REPEATS["timeit"], number)) / number * 1e9


def _probe(setup: str, code: str) -> list[str]:
    """argv timing ``code`` once after ``setup`` inside a fresh interpreter (prints seconds)."""
    body = f"import time\n{setup}\nstart = time.perf_counter()\n{code}\nprint(time.perf_counter() - start)"
    return [sys.executable, "-c", body]


def cold_ms(shape: tuple[str, str], alternative: tuple[str, str]) -> tuple[float, float]:
    """Medians of running each (setup, code)'s code once in a fresh interpreter, in ms: what it
    adds to a cold start, timed inside the process. The two alternate, so drift hits both."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEATS["runs"]):
        for (setup, code), out in zip((shape, alternative), times, strict=True):
            done = subprocess.run(_probe(setup, code), check=True, capture_output=True, text=True)
            out.append(float(done.stdout) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def whole_ms(shape: str, alternative: str) -> tuple[float, float]:
    """Medians of whole ``python -c CODE`` processes, in ms, alternating the two."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(REPEATS["runs"]):
        for code, out in zip((shape, alternative), times, strict=True):
            start = timeit.default_timer()
            subprocess.run([sys.executable, "-c", code], check=True)
            out.append((timeit.default_timer() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


# -- the server's hot path ---------------------------------------------------------------------


@row("Status.OK as a module constant (_response.OK)")
def _status_ok() -> tuple[float, float, str]:
    setup = "from jrpc_unix._response import OK, Status; s = Status.OK"
    return per_op_ns("s is OK", setup), per_op_ns("s is Status.OK", setup), "ns"


@row("Response.ok filled slot by slot (object.__new__)")
def _response_ok() -> tuple[float, float, str]:
    setup = "from jrpc_unix._response import Response, Status"
    return per_op_ns("Response.ok(1)", setup), per_op_ns("Response(Status.OK, 1)", setup), "ns"


@row("Response: a slotted dataclass, not frozen")
def _response_frozen() -> tuple[float, float, str]:
    setup = (
        "from dataclasses import dataclass\n"
        "@dataclass(slots=True)\nclass A:\n a: int = 0\n b: int = 0\n c: str = ''\n d: int = 1\n"
        "@dataclass(slots=True, frozen=True)\nclass F:\n a: int = 0\n b: int = 0\n c: str = ''\n d: int = 1\n"
    )
    return per_op_ns("A(1, 2, 'x', 3)", setup), per_op_ns("F(1, 2, 'x', 3)", setup), "ns"


@row("current_context(): ContextVar.get(None), not try/except LookupError")
def _context_get() -> tuple[float, float, str]:
    scope = {"cv": contextvars.ContextVar("cv")}
    raising = "try:\n cv.get()\nexcept LookupError:\n pass"
    return per_op_ns("cv.get(None)", scope=scope), per_op_ns(raising, scope=scope), "ns"


@row("current_context() builds RequestContext slot by slot")
def _context_build() -> tuple[float, float, str]:
    setup = (
        "from jrpc_unix._service.context import RequestContext\n"
        "new = object.__new__\n"
        "def slots():\n c = new(RequestContext); c.method = 'm'; c.request_id = 1\n"
        " c.is_notification = False; c.peer = None; c.server = None; c.connection = None\n"
        "def call():\n RequestContext('m', 1, False, None, None, None)\n"
    )
    return per_op_ns("slots()", setup), per_op_ns("call()", setup), "ns"


@row("the inline slot: a plain object per thread, not threading.local")
def _inline_slot() -> tuple[float, float, str]:
    scope = {"local": threading.local(), "Slot": type("Slot", (), {"__slots__": ("method",)})}
    scope["slot"] = scope["Slot"]()
    return per_op_ns("slot.method = 'm'", scope=scope), per_op_ns("local.method = 'm'", scope=scope), "ns"


@row("parser_for: one translate per read, not a regex")
def _long_digits() -> tuple[float, float, str]:
    setup = (
        "import re\n"
        "from jrpc_unix._wire.fastjson import _DIGITS_TO_ZERO, _LONG_RUN\n"
        'text = b\'{"jsonrpc":"2.0","method":"ping","id":12345}\\n\' * 64\n'
        "rx = re.compile(rb'[0-9]{19}')"
    )
    shape = per_op_ns("_LONG_RUN in text.translate(_DIGITS_TO_ZERO)", setup)
    return shape, per_op_ns("rx.search(text)", setup), "ns per 64-line read"


@row("parser_for: one check per read, not one per line")
def _check_per_read() -> tuple[float, float, str]:
    setup = (
        "from jrpc_unix._wire.fastjson import _DIGITS_TO_ZERO, _LONG_RUN\n"
        'line = b\'{"jsonrpc":"2.0","method":"ping","id":12345}\'\n'
        "lines = [line] * 64; text = b'\\n'.join(lines)"
    )
    per_line = "for x in lines:\n _LONG_RUN in x.translate(_DIGITS_TO_ZERO)"
    return per_op_ns("_LONG_RUN in text.translate(_DIGITS_TO_ZERO)", setup), per_op_ns(per_line, setup), "ns"


@row("fastjson.dumps: out.find(b'null'), not b'null' in out")
def _find_null() -> tuple[float, float, str]:
    setup = 'out = b\'{"jsonrpc":"2.0","result":"pong","id":1}\''
    return per_op_ns("out.find(b'null') != -1", setup), per_op_ns("b'null' in out", setup), "ns"


@row("Methods: a precomputed shape, not inspect.Signature.bind")
def _bind() -> tuple[float, float, str]:
    setup = (
        "import inspect\nfrom jrpc_unix import Methods\nm = Methods()\n"
        "@m.add\ndef subtract(minuend: float, subtrahend: float) -> float:\n return minuend - subtrahend\n"
        "spec = m.spec('subtract')\nassert spec is not None\n"
        "shape = spec.shape"
    )
    shape = per_op_ns("shape.accepts([42, 23])", setup)
    alternative = per_op_ns("inspect.signature(subtract).bind(42, 23)", setup)
    return shape, alternative, "ns (jsonrpcserver's check: signature(f).bind)"


@row("Methods: param types checked by a generated fits(), not a loop over checks")
def _param_types() -> tuple[float, float, str]:
    setup = (
        "from jrpc_unix import Methods\nm = Methods()\n"
        "@m.add\ndef subtract(minuend: float, subtrahend: float) -> float:\n return minuend - subtrahend\n"
        "spec = m.spec('subtract')\nassert spec is not None and spec.types is not None\n"
        "types = spec.types"
    )
    shape = per_op_ns("types.fits([42, 23])", setup)
    alternative = per_op_ns("types.problem([42, 23])", setup)
    return shape, alternative, "ns a call of subtract(float, float) (ping, unannotated: ~10 ns)"


@row("MethodSpec.bind: shape and types in one generated function")
def _bind_generated() -> tuple[float, float, str]:
    setup = (
        "from jrpc_unix import Methods\nm = Methods()\n"
        "@m.add\ndef subtract(minuend: float, subtrahend: float) -> float:\n return minuend - subtrahend\n"
        "spec = m.spec('subtract')\nassert spec is not None and spec.types is not None\n"
        "bind, accepts, fits = spec.bind, spec.shape.accepts, spec.types.fits\n"
        "p = {'minuend': 42, 'subtrahend': 23}"
    )
    return per_op_ns("bind(p)", setup), per_op_ns("accepts(p) and fits(p)", setup), "ns a named subtract call"


@row("fast path: named params passed by position, not f(**params)")
def _by_position() -> tuple[float, float, str]:
    setup = "def f(key, value): pass\np = {'key': 'bench', 'value': 5}\nargs = (p['key'], p['value'])"
    return per_op_ns("f(*args)", setup), per_op_ns("f(**p)", setup), "ns (the tuple is built by bind)"


@row("Histogram.add: the slot from a table, not the arithmetic")
def _histogram_table() -> tuple[float, float, str]:
    setup = (
        "from jrpc_unix._service.stats import Histogram\nh = Histogram()\n"
        "class Old:\n __slots__ = ('count', 'total_ns', 'slots')\n"
        " def __init__(self): self.count = self.total_ns = 0; self.slots = [0] * 512\n"
        " def add(self, ns):\n  self.count += 1\n  self.total_ns += ns\n"
        "  if ns < 8:\n   self.slots[ns] += 1\n   return\n"
        "  exp = ns.bit_length() - 4\n  self.slots[(exp + 1) * 8 + ((ns >> exp) & 7)] += 1\n"
        "old = Old()"
    )
    return per_op_ns("h.add(3000)", setup), per_op_ns("old.add(3000)", setup), "ns a 3 us latency"


@row("current_context(): an inline context reused while it describes the request")
def _context_reused() -> tuple[float, float, str]:
    setup = (
        "from jrpc_unix._service.context import current_context, inline_slot\n"
        "class Conn:\n peer = None\n server = None\n"
        "slot = inline_slot()\nslot.connection, slot.method, slot.request_id = Conn(), 'config.set', None\n"
        "slot.notification = True"
    )
    fresh = "slot.context = None\ncurrent_context()"
    shape = per_op_ns("slot.context\ncurrent_context()", setup)  # (the same statement count)
    return shape, per_op_ns(fresh, setup), "ns a notification's handler asking (a burst)"


@row("queued events copied out of orjson's buffer (pubsub.event_bytes)")
def _event_copy() -> tuple[float, float, str]:
    setup = "import orjson\ndata = {'key': 'level', 'value': 'debug', 'previous': 'info'}"
    copied = per_op_ns("memoryview(orjson.dumps(data)).tobytes()", setup)
    return copied, per_op_ns("orjson.dumps(data)", setup), "ns (the copy's cost)"


@row("Server.publish with nobody listening: no hop onto the loop")
def _publish_unheard() -> tuple[float, float, str]:
    import os
    import tempfile

    import trio

    from jrpc_unix import Methods, Server

    methods = Methods()
    methods.add_topic("t", "nobody listens")
    server = Server(methods)
    found: list[float] = []

    async def measure() -> None:
        path = os.path.join(tempfile.mkdtemp(), "s")
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, path)
            hop = server._shared.loop.call  # what publish did before: hop, then look
            scope = {"server": server, "hop": hop}
            found.append(per_op_ns("server.publish('t', 1)", scope=scope))
            found.append(per_op_ns("hop(server._publish, 't', 1)", scope=scope))
            server.stop()

    trio.run(measure)
    return found[0], found[1], "ns a publish"


@row("rpc.stats snapshot shared by the subscribers of a tick (20 methods)")
def _stats_snapshot() -> tuple[float, float, str]:
    setup = (
        "from jrpc_unix._service.stats import ServerStats\nfrom jrpc_unix._server.pubsub import event_bytes\n"
        "s = ServerStats()\n"
        "for i in range(20):\n m = s.method(f'm{i}', True)\n"
        " for ns in range(1000, 200000, 997): m.latency.add(ns)"
    )
    one = per_op_ns("event_bytes(s.snapshot())", setup) / 1000
    return one, one * 100, "µs (one; and for 100 subscribers, unshared)"


@row("stop_reading: shutdown(SHUT_RD), not a cancel scope per read")
def _cancel_scope() -> tuple[float, float, str]:
    import trio

    async def main() -> float:
        def scope() -> None:
            with trio.CancelScope():  # noqa: ASYNC100 - its cost is what is measured
                pass

        return per_op_ns("scope()", scope={"scope": scope})

    return 0.0, trio.run(main), "ns per read (the scope's cost)"


@row("Calls._fast: the common request in one function (a call saved)")
def _call_saved() -> tuple[float, float, str]:
    setup = "class C:\n def f(self, a, b): return a\nc = C()"
    return 0.0, per_op_ns("c.f(1, 2)", setup), "ns per Python call saved"


@row("Notification(tuple), not a NamedTuple (defined at import)")
def _namedtuple() -> tuple[float, float, str]:
    setup = "from typing import Any, NamedTuple"
    tuple_class = (
        "class N(tuple):\n __slots__ = ()\n def __new__(cls, m, p): return tuple.__new__(cls, (m, p))\n"
        " method = property(lambda self: self[0])\n params = property(lambda self: self[1])"
    )
    named = "class N(NamedTuple):\n method: str\n params: Any"
    return *cold_ms((setup, tuple_class), (setup, named)), "ms (first definition in a process)"


# -- the command line's start-up ----------------------------------------------------------------


@row("the clients' JSON: stdlib json, not orjson")
def _orjson_import() -> tuple[float, float, str]:
    return *cold_ms(("", "import json"), ("", "import orjson")), "ms (import, cold)"


@row("quick_args: no argparse for call/notify")
def _argparse() -> tuple[float, float, str]:
    setup = "import jrpc_unix._cli.commands\nfrom jrpc_unix._cli.main import quick_args"
    quick = "quick_args(['call', 'S', 'ping'])"
    parser = (
        "from jrpc_unix._cli.parser import build_parser\n"
        "build_parser(serve=False).parse_args(['call', 'S', 'ping'])"
    )
    return *cold_ms((setup, quick), (setup, parser)), "ms (reading `call S ping`, cold)"


@row("watch's `import signal` only in watch")
def _signal_import() -> tuple[float, float, str]:
    setup = "import jrpc_unix._cli.commands"
    return *cold_ms((setup, "pass"), (setup, "import signal")), "ms (import, cold)"


@row("main(): the cyclic GC paused while the commands are imported")
def _gc_pause() -> tuple[float, float, str]:
    paused = "gc.disable()\nimport jrpc_unix._cli.commands\ngc.enable()"
    imports = "import jrpc_unix._cli.commands"
    return *cold_ms(("import gc", paused), ("import gc", imports)), "ms (importing the commands, cold)"


@row("run(): os._exit after a client command (no interpreter teardown)")
def _os_exit() -> tuple[float, float, str]:
    imports = "import sys, os, jrpc_unix._cli.commands; sys.stdout.flush(); "
    return *whole_ms(imports + "os._exit(0)", imports + "sys.exit(0)"), "ms (whole process)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="run the rows whose name contains this text")
    parser.add_argument("--quick", action="store_true", help="each row once: proves the rows run")
    args = parser.parse_args()
    if args.quick:
        REPEATS.update(timeit=1, runs=1)
    print(f"Python {sys.version.split()[0]} ({sys.implementation.name})")
    print(f"| {'row':<70} | {'shape':>8} | {'alternative':>11} | {'ratio':>6} | unit |")
    print(f"|{'-' * 72}|{'-' * 10}:|{'-' * 12}:|{'-' * 7}:|------|")
    for name, measure in ROWS.items():
        if args.only.lower() not in name.lower():
            continue
        shape, alternative, unit = measure()
        ratio = f"{alternative / shape:.2f}x" if shape else "-"
        print(f"| {name:<70} | {shape:>8.3g} | {alternative:>11.3g} | {ratio:>6} | {unit} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
