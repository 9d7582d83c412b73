"""This project side by side with what a Python user would pick instead for a control socket.

    python benchmarks/peers.py               # full: 5 interleaved rounds of 20,000 calls per peer
    python benchmarks/peers.py --quick       # tiny counts, 1 round: proves the harness works (CI)

The same small call (``config.get("level")``, one string back) served on a UNIX socket by each
peer and driven by its own Python client (``benchmarks/peer_impls.py``), sequential calls on one
connection, the server pinned to one CPU and the client to another. CPU per call is the client's
plus the server's (utime + stime from ``/proc/PID/stat``, whole processes with all their threads)
over the calls; calls/s is the client's. Peers take turns every round (A B C A B C ...); a cell
is the median over the rounds, a ratio the median of the per-round ratios. Peers whose package
is not installed (``pip install '.[bench]'``) are listed as skipped. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from peer_impls import CLIENT, PEERS, VALUE
from run import keep_awake, machine, pinned

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TICK = os.sysconf("SC_CLK_TCK")
# (peer, op, ratio): this project's CPU per call against that peer's, as the issue sets them
TARGETS = {"varlink": ("<=", 0.8), "grpc": ("<=", 0.33), "grpc-aio": ("<=", 0.33), "stdlib": ("<=", 1.2)}
DISTRIBUTION = {"varlink": "varlink", "grpc": "grpcio", "grpc-aio": "grpcio", "pyro5": "Pyro5"}
DISTRIBUTION |= {"rpyc": "rpyc", "fastapi": "fastapi", "jrpc": "jrpc-unix"}


@dataclass(frozen=True)
class Plan:
    calls: int = 20000  # per peer, per round
    warmup: int = 500
    rounds: int = 5


QUICK = Plan(calls=200, warmup=20, rounds=1)


def cpu_seconds(pid: int | str) -> float:
    """utime + stime of a whole process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def drive(peer: str, path: str, calls: int, warmup: int) -> int:
    """Client process: connect, warm up, say ready, wait for go, make the calls, report."""
    call = CLIENT[peer](path)
    for _ in range(warmup):
        call()
    print("ready", flush=True)
    sys.stdin.readline()
    wrong = 0
    cpu0, t0 = cpu_seconds("self"), time.perf_counter()
    for _ in range(calls):
        if call() != VALUE:
            wrong += 1
    wall, cpu = time.perf_counter() - t0, cpu_seconds("self") - cpu0
    print(json.dumps({"wall_s": wall, "client_cpu_s": cpu, "wrong": wrong}), flush=True)
    return 0


class PeerServer:
    """One peer's server process on its own socket, pinned to ``cpu``."""

    def __init__(self, peer: str, workdir: Path, cpu: int | None) -> None:
        self.peer, self.cpu = peer, cpu
        self.sock = str(workdir / f"{peer}.sock")
        self.log = workdir / f"{peer}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [*pinned(self.cpu), sys.executable, str(HERE / "peer_impls.py"), self.peer, self.sock]
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.connect(self.sock)
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.peer} did not start:\n{self.log.read_text(errors='replace')[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def measure(server: PeerServer, plan: Plan, cpu: int | None) -> dict[str, Any]:
    """One client run against ``server``: calls/s, CPU per call (client, server), wrong answers."""
    assert server.proc is not None
    cmd = [*pinned(cpu), sys.executable, __file__, "--drive", server.peer, server.sock]
    cmd += [str(plan.calls), str(plan.warmup)]
    with subprocess.Popen(
        cmd, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as client:
        assert client.stdin is not None
        assert client.stdout is not None
        assert client.stderr is not None
        if client.stdout.readline().strip() != "ready":
            client.kill()
            return {"ok": False, "problem": client.stderr.read()[-800:] or "client died"}
        server0 = cpu_seconds(server.proc.pid)
        client.stdin.write("go\n")
        client.stdin.flush()
        line = client.stdout.readline()
        server_cpu = cpu_seconds(server.proc.pid) - server0
        client.wait(60)
        if not line:
            return {"ok": False, "problem": client.stderr.read()[-800:] or "client died"}
    got: dict[str, Any] = json.loads(line)
    n = plan.calls
    return {
        "ok": got["wrong"] == 0,
        "problem": f"{got['wrong']} wrong answer(s)" if got["wrong"] else "",
        "calls_per_s": n / got["wall_s"],
        "cpu_us": (got["client_cpu_s"] + server_cpu) / n * 1e6,
        "server_us": server_cpu / n * 1e6,
        "client_us": got["client_cpu_s"] / n * 1e6,
    }


def version(peer: str) -> str:
    if peer == "stdlib":
        return f"Python {platform.python_version()}"
    try:
        return metadata.version(DISTRIBUTION[peer])
    except (KeyError, metadata.PackageNotFoundError):
        return ""


def table(results: dict[str, list[dict[str, Any]]], skipped: dict[str, str]) -> list[str]:
    """Markdown: medians per peer, this project's CPU per call against each, the issue's targets."""
    head = ["peer", "version", "calls/s", "CPU µs/call", "server µs", "client µs", "jrpc-unix CPU / peer's"]
    lines = ["| " + " | ".join([*head, "target", "met"]) + " |", "|" + "---|" * (len(head) + 2)]
    ours = results.get("jrpc", [])
    for peer, runs in results.items():
        med = {
            k: statistics.median(r[k] for r in runs)
            for k in ("calls_per_s", "cpu_us", "server_us", "client_us")
        }
        ratio = None
        if ours and len(ours) == len(runs) and all(r["cpu_us"] for r in runs):  # (ticks of 10 ms)
            ratio = statistics.median(a["cpu_us"] / b["cpu_us"] for a, b in zip(ours, runs, strict=True))
        goal, met = "", ""
        if peer in TARGETS and ratio is not None:
            op, value = TARGETS[peer]
            goal = f"{op} {value:g}x"
            met = "yes" if ratio <= value else "**no**"
        cells = [PEERS[peer][0], version(peer), f"{med['calls_per_s']:,.0f}", f"{med['cpu_us']:.1f}"]
        cells += [
            f"{med['server_us']:.1f}",
            f"{med['client_us']:.1f}",
            "—" if ratio is None else f"{ratio:.2f}x",
        ]
        lines.append("| " + " | ".join([*cells, goal, met]) + " |")
    for peer, why in skipped.items():
        lines.append(f"| {PEERS[peer][0]} | skipped: {why} |" + " |" * 7)
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny counts, 1 round: proves the harness works")
    p.add_argument("--rounds", type=int, help="rounds (default 5; 1 with --quick)")
    p.add_argument("--calls", type=int, help="calls per peer per round (default 20,000; 200 with --quick)")
    p.add_argument("--peers", default=",".join(PEERS), help=f"comma-separated, out of {','.join(PEERS)}")
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument(
        "--keep-awake",
        action=argparse.BooleanOptionalAction,
        help="SCHED_IDLE spinner per CPU during the run (default: on, off with --quick)",
    )
    p.add_argument("--drive", nargs=4, metavar=("PEER", "SOCK", "N", "WARMUP"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.peer_keys = [s.strip() for s in args.peers.split(",")]
    if bad := [x for x in args.peer_keys if x not in PEERS]:
        p.error(f"unknown peer(s): {', '.join(bad)}")
    if (args.rounds is not None and args.rounds < 1) or (args.calls is not None and args.calls < 1):
        p.error("--rounds and --calls must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.drive:
        peer, sock, n, warm = args.drive
        return drive(peer, sock, int(n), int(warm))
    base = QUICK if args.quick else Plan()
    plan = Plan(args.calls or base.calls, base.warmup, args.rounds or base.rounds)
    awake = args.keep_awake if args.keep_awake is not None else not args.quick
    cpus = sorted(os.sched_getaffinity(0))
    server_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)
    skipped = {
        p: f"`{PEERS[p][1]}` not installed (pip install '.[bench]')"
        for p in args.peer_keys
        if any(importlib.util.find_spec(m) is None for m in (PEERS[p][1] or "").split(",") if m)
    }
    peers = [p for p in args.peer_keys if p not in skipped]
    where = (
        f"servers on CPU {server_cpu}, clients on CPU {client_cpu}"
        if server_cpu is not None
        else "not pinned"
    )
    print(
        f"# peers: {machine()}; {where}; keep-awake {'on' if awake else 'off'}; {plan.rounds} round(s) "
        f"of {plan.calls:,} sequential calls on one connection per peer; medians\n",
        flush=True,
    )
    results: dict[str, list[dict[str, Any]]] = {p: [] for p in peers}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="jrpc-peers-") as tmp, keep_awake(awake):
        servers = {p: PeerServer(p, Path(tmp), server_cpu) for p in peers}
        try:
            for server in servers.values():
                server.start()
            for rnd in range(plan.rounds):
                for peer in peers:  # A B C A B C: every peer under the same conditions
                    result = measure(servers[peer], plan, client_cpu)
                    verdict = "ok" if result["ok"] else "PROBLEM: " + result["problem"]
                    print(f"  round {rnd + 1}/{plan.rounds} {peer:9}: {verdict}", flush=True)
                    if result["ok"]:
                        results[peer].append(result)
                    else:
                        problems.append(f"{peer} round {rnd + 1}: {result['problem']}")
        finally:
            for server in servers.values():
                server.stop()
    measured = {p: runs for p, runs in results.items() if len(runs) == plan.rounds}
    print()
    print("\n".join(table(measured, skipped)))
    for line in problems:
        print(f"\nPROBLEM: {line}")
    print(f"\n{'PROBLEMS: ' + str(len(problems)) if problems else 'every call answered correctly'}")
    if args.json:
        report = {"machine": machine(), "plan": plan.__dict__, "results": results}
        args.json.write_text(
            json.dumps({**report, "skipped": skipped, "problems": problems}, indent=1) + "\n"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
