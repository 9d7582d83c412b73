"""What an idle connection costs, and what a server weighs before any: demo against raw trio.

    python benchmarks/idle_memory.py                  # both measures, 1,000 connections
    python benchmarks/idle_memory.py --traced 1000    # tracemalloc only (in-process server)
    python benchmarks/idle_memory.py --rss 10000      # VmRSS only (server in its own process)
    python benchmarks/idle_memory.py --first-unusual  # ms of the first request needing jsonrpcserver

*Traced*: the server runs in this process under ``tracemalloc``; a helper process (run.py's
``--hold``) opens the idle connections; the bytes traced with them held, less before, per
connection, and the source lines that allocated most. Load does not skew it.
*RSS*: each server as run.py starts it (its own process), VmRSS before any connection and per
idle connection with ``count`` held (run.py's ``measure_idle``), A B A B rounds, medians.
*First unusual*: in-process, the time of the first and second request whose params do not bind
(the first one that needs jsonrpcserver), on a server that has answered an ordinary call.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import trio

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("bench_run", HERE / "run.py")
assert _spec is not None
assert _spec.loader is not None
bench_run = importlib.util.module_from_spec(_spec)
sys.modules["bench_run"] = bench_run
_spec.loader.exec_module(bench_run)


def _raise_fd_limit(count: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 512:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 512), hard))


async def _serve_in_process(which: str, path: str, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    if which == "raw":
        sys.path.insert(0, str(HERE))
        import raw_trio

        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
        await sock.bind(path)
        sock.listen(4096)
        task_status.started()
        await trio.serve_listeners(raw_trio.serve_connection, [trio.SocketListener(sock)])
    else:
        from jrpc_unix import Limits, Server
        from jrpc_unix.demo import methods

        limits = Limits(max_connections=20000, max_connections_per_uid=20000)
        await Server(methods, limits=limits).serve(path, task_status=task_status)


def traced(which: str, count: int, top: int, active: bool = False) -> dict[str, Any]:
    """tracemalloc bytes per idle connection, with the server in this process; ``active``:
    each connection answered one ping before it idles."""
    _raise_fd_limit(count)
    result: dict[str, Any] = {}

    async def main() -> None:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            path = f"{tmp}/s"
            async with trio.open_nursery() as nursery:
                await nursery.start(_serve_in_process, which, path)
                await trio.sleep(0.2)
                gc.collect()
                tracemalloc.start(12)
                before = tracemalloc.take_snapshot()
                cmd = [sys.executable, str(HERE / "run.py"), "--hold", path, str(count)]
                if active:
                    cmd = [sys.executable, __file__, "--hold-active", path, str(count)]
                helper = await trio.lowlevel.open_process(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
                assert helper.stdout is not None
                assert helper.stdin is not None
                line = b""
                while not line.endswith(b"\n"):
                    line += await helper.stdout.receive_some(4096)
                held = json.loads(line)
                await trio.sleep(0.3)
                gc.collect()
                after = tracemalloc.take_snapshot()
                tracemalloc.stop()
                await helper.stdin.aclose()
                await helper.wait()
                stats = after.compare_to(before, "traceback")
                total = sum(s.size_diff for s in stats)
                n = held["held"] or 1
                result.update(held=held["held"], traced_bytes_per_conn=total / n)
                sites: dict[str, list[int]] = {}
                for s in stats:
                    site = sites.setdefault(_where(s.traceback), [0, 0])
                    site[0] += s.size_diff
                    site[1] += s.count_diff
                ranked = sorted(sites.items(), key=lambda kv: -kv[1][0])[:top]
                result["top"] = [(round(sz / n), round(count / n, 1), where) for where, (sz, count) in ranked]
                nursery.cancel_scope.cancel()

    trio.run(main)
    return result


def hold_active(path: str, count: int) -> int:
    """Helper process: ``count`` connections that each had one ping answered, held open until
    stdin closes (run.py's ``--hold`` opens them without a byte)."""
    _raise_fd_limit(count)
    socks = []
    for _ in range(count):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(path)
        sock.sendall(b'{"jsonrpc":"2.0","method":"ping","id":1}\n')
        sock.recv(4096)
        socks.append(sock)
    print(json.dumps({"held": len(socks)}), flush=True)
    sys.stdin.read()
    return 0


def _where(tb: tracemalloc.Traceback) -> str:
    """Where in the server's own code (jrpc_unix, raw_trio.py) it was allocated: the innermost
    such line, after the innermost line of all (trio's, the stdlib's) when that is elsewhere."""
    inner = tb[-1]
    ours = next((f for f in reversed(tb) if "jrpc_unix" in f.filename or "raw_trio" in f.filename), inner)
    name = f"{Path(ours.filename).parent.name}/{Path(ours.filename).name}:{ours.lineno}"
    if ours is not inner:
        name += f" ({Path(inner.filename).name}:{inner.lineno})"
    return name


def rss(count: int, rounds: int) -> dict[str, dict[str, float]]:
    """VmRSS before connections and KiB per idle connection, each server its own process."""
    _raise_fd_limit(count)
    runs: dict[str, list[dict[str, Any]]] = {"raw": [], "demo": []}
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        for _ in range(rounds):
            for key in runs:
                server = bench_run.Server(key, Path(tmp), None)
                server.start()
                try:
                    runs[key].append(bench_run.measure_idle(count, None, server))
                finally:
                    server.stop()
    out = {}
    for key, rs in runs.items():
        out[key] = {
            "rss_before_mib": statistics.median(r["rss_before_kib"] for r in rs) / 1024,
            "kib_per_conn": statistics.median(r["per_conn_kib"] for r in rs),
            "held": min(r["held"] for r in rs),
        }
    return out


def first_unusual() -> dict[str, float]:
    """ms of the first and second request whose params do not bind, after an ordinary call."""
    out: dict[str, float] = {}

    async def main() -> None:
        with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
            path = f"{tmp}/s"
            async with trio.open_nursery() as nursery:
                await nursery.start(_serve_in_process, "demo", path)
                sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                await sock.connect(path)

                async def call(line: bytes) -> float:
                    start = time.perf_counter()
                    await sock.send(line + b"\n")
                    data = b""
                    while not data.endswith(b"\n"):
                        data += await sock.recv(65536)
                    return (time.perf_counter() - start) * 1000

                out["ordinary_ms"] = await call(b'{"jsonrpc":"2.0","method":"ping","id":1}')
                out["loaded_before"] = float("jsonrpcserver" in sys.modules)
                bad = b'{"jsonrpc":"2.0","method":"echo","params":[1,2,3],"id":2}'
                out["first_bad_params_ms"] = await call(bad)
                out["second_bad_params_ms"] = await call(bad)
                out["loaded_after"] = float("jsonrpcserver" in sys.modules)
                sock.close()
                nursery.cancel_scope.cancel()

    trio.run(main)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--traced", type=int, metavar="COUNT", help="tracemalloc only")
    parser.add_argument("--which", choices=("raw", "demo", "both"), default="both")
    parser.add_argument("--top", type=int, default=15, help="allocation sites shown (traced)")
    parser.add_argument("--rss", type=int, metavar="COUNT", help="VmRSS only")
    parser.add_argument("--rounds", type=int, default=3, help="A B rounds for --rss (default 3)")
    parser.add_argument("--first-unusual", action="store_true", help="first bad-params request ms")
    parser.add_argument("--active", action="store_true", help="traced: each connection had one ping first")
    parser.add_argument("--hold-active", nargs=2, metavar=("SOCK", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hold_active:
        return hold_active(args.hold_active[0], int(args.hold_active[1]))
    if args.first_unusual:
        print(json.dumps(first_unusual()))
        return 0
    if args.traced is None and args.rss is None:
        args.traced = args.rss = 1000
    if args.traced:
        for which in ("raw", "demo") if args.which == "both" else (args.which,):
            # A fresh process each: the first run's leftovers would count in the second.
            if args.which == "both":
                cmd = [sys.executable, __file__, "--traced", str(args.traced), "--which", which]
                cmd += ["--top", str(args.top), *(["--active"] if args.active else [])]
                subprocess.run(cmd, check=True)
                continue
            r = traced(which, args.traced, args.top, args.active)
            print(f"{which}: {r['traced_bytes_per_conn']:.0f} B traced per idle conn ({r['held']} held)")
            for size, n, where in r["top"]:
                print(f"  {size:6d} B {n!s:>5} blocks  {where}")
    if args.rss:
        for key, r in rss(args.rss, args.rounds).items():
            print(
                f"{key}: RSS before {r['rss_before_mib']:.1f} MiB, {r['kib_per_conn']:.2f} KiB per idle conn "
                f"({r['held']:.0f} held of {args.rss}; medians of {args.rounds})"
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
