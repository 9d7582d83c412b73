"""Benchmark the demo service against the raw trio baseline, side by side in one run.

    python benchmarks/run.py                 # full run: 5 rounds, medians, ratios vs raw trio
    python benchmarks/run.py --quick         # tiny counts, 1 round: proves the harness works (CI)

Builds ``benchmarks/bin/loadgen`` from ``loadgen.c`` with gcc when missing or stale, starts every
server on its own socket in a temporary directory (pinned to CPU 0 while the load runs on CPU 1,
when there are 2+ CPUs), drives each with the same load, alternating servers (A B A B ...) for
every round, and prints a markdown table of medians with ratios against the raw trio baseline.
See benchmarks/README.md for what every mode measures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LOADGEN_SRC = HERE / "loadgen.c"
LOADGEN = HERE / "bin" / "loadgen"
# key -> (column title, argv before the socket path, argv after it)
SERVERS: dict[str, tuple[str, list[str], list[str]]] = {
    "raw": ("raw trio", [str(HERE / "raw_trio.py")], []),
    # The demo service (its methods, as examples/demo_server.py serves them), with the
    # connection limits raised so the idle10k mode can hold 10,000 connections (defaults: 128, 32).
    "demo": (
        "demo",
        ["-m", "jrpc_unix", "serve", "jrpc_unix.demo:methods"],
        ["--max-connections", "10100", "--max-connections-per-uid", "10100", "--log-level", "warning"],
    ),
    "naive": ("naive asyncio", [str(HERE / "naive_asyncio.py")], []),
    # The same demo hosted by an asyncio program (jrpc_unix.aio: trio as asyncio's guest), on
    # asyncio's own loop and on uvloop's: what guest mode costs against the trio-hosted demo.
    "aio": ("demo on asyncio", [str(HERE / "aio_demo.py")], []),
    "uvloop": ("demo on uvloop", [str(HERE / "aio_demo.py")], ["--uvloop"]),
    # The same demo with per-method statistics off: what rpc.stats costs (target: <= 5 %).
    "nostats": (
        "demo, no method stats",
        [
            "-c",
            "import sys; from jrpc_unix import Limits, run; from jrpc_unix.demo import methods; "
            "run(sys.argv[1], methods, method_stats=False, "
            "limits=Limits(max_connections=10100, max_connections_per_uid=10100))",
        ],
        [],
    ),
    # The demo with a Policy (every admitted caller at operate level), which turns the audit
    # trail on: each call of an operate-level method (every demo method but settings.get and its
    # read-level kin: ping, config.set, ...) leaves the fast path and makes a record, kept in
    # rpc.audit's ring and logged as one JSON line on jrpc_unix.audit at serve's default level
    # (INFO) into this server's log file. The load runs as the server's own uid, which a Policy
    # always makes admin: a call's cost depends on the method's level, not the caller's.
    "audit": (
        "demo, audit on",
        ["-m", "jrpc_unix", "serve", "jrpc_unix.demo:methods"],
        ["--default-access", "operate"],
    ),
}
BASELINE = "raw"
MODES = (
    "pingpong",
    "pipeline",
    "conns",
    "notify",
    "echo",
    "idle",
    "idle10k",
    "paced",
    "cli",
    "go_pingpong",
    "go_pipeline",
    "lsp_pingpong",
    "lsp_pipeline",
    "lsp_notify",
    "seq_pingpong",
    "seq_pipeline",
    "seq_notify",
    "peers",
    "settings_get",
    "settings_set",
)
LONG_MODES = ("idle10k", "paced")  # ~20 s per server each: at most 3 rounds
#: The other framings the server detects on a connection's first bytes (loadgen -f): mode
#: ``PREFIX_BASE`` is mode BASE in that framing, measured right after BASE in newline JSON on
#: the same server, so each has its ratio to newline from side-by-side runs. prefix -> (loadgen
#: -f, row title). The Go original's frames have no notifications.
FRAMINGS = {"go": ("unixsock", "Go frames"), "lsp": ("lsp", "LSP"), "seq": ("json-seq", "json-seq")}
FRAMED_MODES = tuple(m for m in MODES if m.split("_", 1)[0] in FRAMINGS)
#: The asyncio-hosted demos (issue 16) run the modes that show guest mode's cost per wake-up,
#: not the long ones (about 20 s per server and round each) nor the other framings'.
AIO_MODES = ("pingpong", "pipeline", "conns", "notify", "echo", "idle")
#: The audit trail's cost shows in calls and notifications (it costs nothing per connection).
AUDIT_MODES = ("pingpong", "pipeline", "notify")
#: The modes some servers run only; the servers some modes run on only (the other framings and
#: the demo's typed settings, specs/settings.md: the demo's own servers).
SERVER_MODES = {"aio": AIO_MODES, "uvloop": AIO_MODES, "audit": AUDIT_MODES}
MODE_SERVERS = {m: ("demo", "nostats") for m in (*FRAMED_MODES, "settings_get", "settings_set")}
MiB = 1024 * 1024


def runs_mode(server: str, mode: str) -> bool:
    """Whether ``server`` runs ``mode`` (SERVER_MODES, MODE_SERVERS)."""
    return mode in SERVER_MODES.get(server, MODES) and server in MODE_SERVERS.get(mode, SERVERS)


@dataclass(frozen=True)
class Plan:
    """How much load each mode sends (per server, per round)."""

    pingpong: int = 20000  # calls, one in flight
    pipeline: int = 100000  # calls, 64 in flight
    window: int = 64
    conns: int = 16
    conn_calls: int = 1000  # calls per connection
    notify: int = 100000  # notifications, then one call
    echo: int = 10000  # calls with a 1 KiB msg
    echo_bytes: int = 1024
    idle: int = 1000  # idle connections held open
    idle10k: int = 10000  # idle connections held open (idle10k)
    paced_conns: int = 1000  # connections, each calling ping at paced_rate (paced)
    paced_rate: float = 10  # calls/s per connection
    paced_calls: int = 100  # calls per connection: 10 s
    settings: int = 20000  # settings.get / settings.set calls, one in flight
    cli_runs: int = 20
    timeout: float = 60.0  # seconds, per load generator run


QUICK = Plan(
    pingpong=300,
    pipeline=2000,
    conn_calls=40,
    notify=2000,
    echo=200,
    idle=100,
    idle10k=300,
    paced_conns=50,
    paced_rate=20,
    paced_calls=10,
    settings=300,
    cli_runs=3,
    timeout=20,
)


# -- rows of the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One metric: where it comes from, how to print it, and the demo's targets."""

    mode: str
    title: str
    get: Callable[[dict[str, Any]], float]
    fmt: str
    targets: tuple[tuple[str | None, str, float], ...] = ()  # (vs server or None=absolute, op, value)


def framed_rows() -> list[Row]:
    """Each other framing's rows (FRAMINGS): its figures, and its rate over newline JSON's."""
    rows = []
    for prefix, (_, name) in FRAMINGS.items():
        rows += [
            Row(
                f"{prefix}_pingpong",
                f"{name} ping-pong, 1 conn: calls/s",
                lambda r: r["calls_per_s"],
                "{:,.0f}",
            ),
            Row(f"{prefix}_pingpong", f"{name} ping-pong: p99 µs", lambda r: r["lat_us"]["p99"], "{:.1f}"),
            Row(f"{prefix}_pingpong", f"{name} ping-pong / newline", lambda r: r["vs_newline"], "{:.2f}x"),
            Row(
                f"{prefix}_pipeline",
                f"{name} pipelined, window 64: calls/s",
                lambda r: r["calls_per_s"],
                "{:,.0f}",
            ),
            Row(f"{prefix}_pipeline", f"{name} pipelined / newline", lambda r: r["vs_newline"], "{:.2f}x"),
        ]
        if f"{prefix}_notify" in FRAMED_MODES:
            rows += [
                Row(
                    f"{prefix}_notify",
                    f"{name} notification burst: notifications/s",
                    lambda r: r["notifs_per_s"],
                    "{:,.0f}",
                ),
                Row(
                    f"{prefix}_notify",
                    f"{name} notification burst / newline",
                    lambda r: r["vs_newline"],
                    "{:.2f}x",
                ),
                Row(
                    f"{prefix}_notify",
                    f"{name} notifications lost",
                    lambda r: r["lost"],
                    "{:.0f}",
                    ((None, "==", 0),),
                ),
            ]
    return rows


ROWS = (
    Row(
        "pingpong",
        "ping-pong, 1 conn: calls/s",
        lambda r: r["calls_per_s"],
        "{:,.0f}",
        (("raw", ">=", 1.0), ("naive", ">=", 4), ("nostats", ">=", 0.95)),
    ),
    Row("pingpong", "ping-pong: p50 µs", lambda r: r["lat_us"]["p50"], "{:.1f}"),
    Row("pingpong", "ping-pong: p99 µs", lambda r: r["lat_us"]["p99"], "{:.1f}", (("raw", "<=", 1.2),)),
    Row(
        "pipeline",
        "pipelined, window 64: calls/s",
        lambda r: r["calls_per_s"],
        "{:,.0f}",
        (("raw", ">=", 1.5), ("naive", ">=", 20)),
    ),
    Row(
        "conns",
        "16 conns in parallel: calls/s",
        lambda r: r["calls_per_s"],
        "{:,.0f}",
        (("raw", ">=", 0.95),),
    ),
    Row(
        "notify",
        "notification burst: notifications/s",
        lambda r: r["notifs_per_s"],
        "{:,.0f}",
        (("raw", ">=", 1.1),),
    ),
    Row("notify", "notifications lost", lambda r: r["lost"], "{:.0f}", ((None, "==", 0),)),
    Row("echo", "echo 1 KiB: calls/s", lambda r: r["calls_per_s"], "{:,.0f}"),
    Row("echo", "echo 1 KiB: p99 µs", lambda r: r["lat_us"]["p99"], "{:.1f}"),
    Row("settings_get", "settings.get ping-pong: calls/s", lambda r: r["calls_per_s"], "{:,.0f}"),
    Row("settings_set", "settings.set one key ping-pong: calls/s", lambda r: r["calls_per_s"], "{:,.0f}"),
    Row(
        "idle",
        "idle conns: RSS MiB before opening",
        lambda r: r["rss_before_kib"] / 1024,
        "{:.1f}",
        (("raw", "+<=", 3),),  # within 3 MiB of raw trio's
    ),
    Row("idle", "idle conns: RSS MiB in all", lambda r: r["rss_kib"] / 1024, "{:.1f}", ((None, "<=", 30),)),
    Row("idle", "idle conns: KiB per conn", lambda r: r["per_conn_kib"], "{:.1f}", (("raw", "<=", 1.1),)),
    Row("idle", "idle conns: held open", lambda r: r["held"], "{:.0f}"),
    Row("idle10k", "10,000 idle conns: RSS MiB in all", lambda r: r["rss_kib"] / 1024, "{:.1f}"),
    Row("idle10k", "10,000 idle conns: KiB per conn", lambda r: r["per_conn_kib"], "{:.1f}"),
    Row("idle10k", "10,000 idle conns: held open", lambda r: r["held"], "{:.0f}"),
    Row(
        "idle10k",
        "10,000 idle conns: not held (refused, failed)",
        lambda r: r["conns"] - r["held"],
        "{:.0f}",
        ((None, "==", 0),),
    ),
    Row("paced", "paced, 1 conn x 10 calls/s: p99 µs", lambda r: r["one"]["lat_us"]["p99"], "{:.1f}"),
    Row("paced", "paced, 1,000 conns x 10 calls/s: p99 µs", lambda r: r["many"]["lat_us"]["p99"], "{:.1f}"),
    Row("paced", "paced, p99 1,000 conns / 1 conn", lambda r: r["growth"], "{:.2f}x"),
    *framed_rows(),
)


# -- processes ----------------------------------------------------------------------------------


def machine() -> str:
    """One line naming the machine, the interpreter and the kernel."""
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{model}, {os.cpu_count()} CPUs; Python {platform.python_version()}; Linux {platform.release()}"


def pinned(cpu: int | None) -> list[str]:
    """A taskset prefix pinning a command to ``cpu`` (nothing when not pinning)."""
    return [] if cpu is None else ["taskset", "-c", str(cpu)]


def build_loadgen() -> Path:
    """Compile loadgen.c into benchmarks/bin/ when the binary is missing or older than the source."""
    if LOADGEN.exists() and LOADGEN.stat().st_mtime >= LOADGEN_SRC.stat().st_mtime:
        return LOADGEN
    cc = os.environ.get("CC", "gcc")
    if shutil.which(cc) is None:
        sys.exit(f"run.py: {cc} not found: it is needed to build {LOADGEN_SRC.name}")
    LOADGEN.parent.mkdir(exist_ok=True)
    tmp = LOADGEN.with_name(f".loadgen.{os.getpid()}")
    subprocess.run([cc, "-O2", "-Wall", "-o", str(tmp), str(LOADGEN_SRC)], check=True)
    tmp.replace(LOADGEN)  # atomic: a concurrent run never sees half a binary
    return LOADGEN


_SPIN = """import os
os.sched_setaffinity(0, {%d})
os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(200_000):
        pass
"""


@contextmanager
def keep_awake(enabled: bool) -> Iterator[None]:
    """One lowest-priority (SCHED_IDLE) busy loop per CPU, so no vCPU halts between messages."""
    spinners = []
    if enabled:
        for cpu in sorted(os.sched_getaffinity(0)):
            spinners.append(subprocess.Popen([sys.executable, "-c", _SPIN % cpu]))
    try:
        yield
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()


def rpc(path: str, method: str, params: dict[str, Any] | None = None, timeout: float = 10) -> Any:
    """One blocking JSON-RPC call; returns the result (raises RuntimeError on an error answer)."""
    req: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": 1}
    if params is not None:
        req["params"] = params
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"{method}: connection closed before the answer")
            buf += chunk
    answer = json.loads(buf.split(b"\n", 1)[0])
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


class Server:
    """One server process under test, on its own socket, pinned to ``cpu``."""

    def __init__(self, key: str, workdir: Path, cpu: int | None) -> None:
        self.key = key
        self.title, self._before, self._after = SERVERS[key]
        self.script = " ".join(self._before)
        self.sock = str(workdir / f"{key}.sock")
        self.log = workdir / f"{key}.log"
        self.cpu = cpu
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            cmd = [*pinned(self.cpu), sys.executable, *self._before, self.sock, *self._after]
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                rpc(self.sock, "ping", timeout=2)
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{self.title} did not start ({self.script}):\n{tail}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> str:
        return "never started" if self.proc is None else f"status {self.proc.returncode}"

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the modes ----------------------------------------------------------------------------------


def run_loadgen(plan: Plan, load_cpu: int | None, mode: str, sock: str, *opts: str) -> dict[str, Any]:
    """One bounded load generator run; its JSON result plus ``ok`` and ``problem``."""
    cmd = [*pinned(load_cpu), str(LOADGEN), "-t", str(plan.timeout), *opts, mode, sock]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=plan.timeout + 30, check=False)
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        result = {"calls_per_s": 0.0, "notifs_per_s": 0.0, "lat_us": {"p50": 0.0, "p99": 0.0}}
    result["ok"] = proc.returncode == 0
    result["problem"] = (
        "" if result["ok"] else (proc.stderr.strip() or f"loadgen exit {proc.returncode}")[-500:]
    )
    return result


def mode_args(plan: Plan, mode: str) -> tuple[str, list[str]]:
    """The load generator's mode and options for one of our modes."""
    return {
        "pingpong": ("pingpong", ["-n", str(plan.pingpong)]),
        "pipeline": ("pipeline", ["-n", str(plan.pipeline), "-w", str(plan.window)]),
        "conns": ("conns", ["-n", str(plan.conn_calls), "-c", str(plan.conns)]),
        "echo": ("pingpong", ["-n", str(plan.echo), "-s", str(plan.echo_bytes)]),
        "settings_get": ("pingpong", ["-n", str(plan.settings), "-m", "settings.get"]),
        # one key, the same value each time after the first: validation, access, the no-change
        # answer (a changing value would also log and publish each call)
        "settings_set": (
            "pingpong",
            ["-n", str(plan.settings), "-m", "settings.set", "-p", '{"values":{"workers":5}}'],
        ),
    }[mode]


def notifications_seen(sock: str) -> int | None:
    """The server's count of notifications from its ``stats`` method, wherever it keeps it."""
    stats = rpc(sock, "stats")
    for where in (stats, stats.get("server")):
        if isinstance(where, dict) and isinstance(where.get("notifications"), int):
            return int(where["notifications"])
    return None


def measure_notify(plan: Plan, load_cpu: int | None, server: Server, *opts: str) -> dict[str, Any]:
    """A burst of config.set notifications, then config.get; ``lost`` from the server's stats.

    The call must read back the value the last notification set (a fresh one each run), and the
    server's notification counter must have grown by exactly the burst's size.
    """
    base = random.randrange(1, 1 << 40)
    before = notifications_seen(server.sock)
    result = run_loadgen(
        plan, load_cpu, "notify", server.sock, "-n", str(plan.notify), "-b", str(base), *opts
    )
    after = notifications_seen(server.sock)
    if before is None or after is None:
        result["lost"] = 0 if result["ok"] else plan.notify
        result["note"] = "stats has no notification count: only the last value read back was checked"
    else:
        result["lost"] = plan.notify - (after - before)
    if result["lost"]:
        result["ok"] = False
        result["problem"] = f"{result['lost']} notification(s) lost; {result['problem']}"
    return result


def measure_load(plan: Plan, load_cpu: int | None, mode: str, server: Server, *opts: str) -> dict[str, Any]:
    """One load generator mode (``opts`` added to its options: ``-f lsp``)."""
    if mode == "notify":
        return measure_notify(plan, load_cpu, server, *opts)
    lg_mode, lg_opts = mode_args(plan, mode)
    return run_loadgen(plan, load_cpu, lg_mode, server.sock, *lg_opts, *opts)


def measure_framed(plan: Plan, load_cpu: int | None, mode: str, server: Server) -> dict[str, Any]:
    """``PREFIX_BASE``: BASE in newline JSON, then at once in the framing; the second's figures,
    and ``vs_newline``: its rate over the first's (side by side, so a shared machine's drift
    mostly cancels out)."""
    prefix, base = mode.split("_", 1)
    newline = measure_load(plan, load_cpu, base, server)
    framed = measure_load(plan, load_cpu, base, server, "-f", FRAMINGS[prefix][0])
    rate = "notifs_per_s" if base == "notify" else "calls_per_s"
    return {
        **framed,
        "newline": newline,
        "vs_newline": framed[rate] / newline[rate] if newline[rate] else 0.0,
        "ok": framed["ok"] and newline["ok"],
        "problem": "; ".join(
            f"{k}: {r['problem']}" for k, r in (("newline", newline), (prefix, framed)) if r["problem"]
        ),
    }


def measure_idle(count: int, load_cpu: int | None, server: Server) -> dict[str, Any]:
    """The server's VmRSS while one helper process holds ``count`` idle connections."""
    before = server.rss_kib()
    cmd = [*pinned(load_cpu), sys.executable, __file__, "--hold", server.sock, str(count)]
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as helper:
        assert helper.stdout is not None
        assert helper.stdin is not None
        held: dict[str, Any] = json.loads(helper.stdout.readline() or '{"held": 0, "error": "helper died"}')
        time.sleep(0.3)
        rss = server.rss_kib()
        helper.stdin.close()
        helper.wait(60)
    result = {"conns": count, **held, "rss_before_kib": before, "rss_kib": rss}
    result["per_conn_kib"] = (rss - before) / held["held"] if held["held"] else 0.0
    result["ok"] = "error" not in held
    result["problem"] = held.get("error", "")
    return result


def hold(path: str, count: int) -> int:
    """Helper process: open ``count`` idle connections, report, hold them until stdin closes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 64), hard))
    socks: list[socket.socket] = []
    report: dict[str, Any] = {}
    last_held = False
    try:
        deadline = time.monotonic() + 120
        for _ in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(10)
            socks.append(sock)
            while True:  # a full accept backlog answers EAGAIN at once: wait for the server
                try:
                    sock.connect(path)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.001)
        # A ping answered on the last connection: the server has taken (or refused) every one.
        socks[-1].sendall(b'{"jsonrpc":"2.0","method":"ping","id":1}\n')
        last_held = b'"result"' in socks[-1].recv(65536)
    except OSError as exc:
        report["error"] = f"after {len(socks)} connections: {exc}"
    time.sleep(0.2)
    poller = select.poll()
    for sock in socks[:-1]:
        poller.register(sock, select.POLLIN)
    # An idle connection that is readable was refused (an error line) or closed by the server.
    readable = {fd for fd, _ in poller.poll(0)}
    rejected = sum(1 for s in socks[:-1] if s.fileno() in readable) + (0 if last_held else 1)
    report.update(held=len(socks) - rejected, rejected=rejected)
    print(json.dumps(report), flush=True)
    sys.stdin.read()
    for sock in socks:
        sock.close()
    return 0


def measure_paced(plan: Plan, load_cpu: int | None, server: Server) -> dict[str, Any]:
    """Ping p99 when 1,000 connections each call 10x/s, against 1 connection at the same pace."""
    opts = ["-r", f"{plan.paced_rate:g}", "-n", str(plan.paced_calls)]
    one = run_loadgen(plan, load_cpu, "paced", server.sock, *opts, "-c", "1")
    many = run_loadgen(plan, load_cpu, "paced", server.sock, *opts, "-c", str(plan.paced_conns))
    p99 = one["lat_us"]["p99"]
    return {
        "one": one,
        "many": many,
        "growth": many["lat_us"]["p99"] / p99 if p99 else 0.0,
        "ok": one["ok"] and many["ok"],
        "problem": "; ".join(r["problem"] for r in (one, many) if r["problem"]),
        "cpu_s": many.get("cpu_s", 0),
        "elapsed_s": many.get("elapsed_s", 1e9),
    }


def dropped_log_lines(log: Path) -> int:
    """The log records a server's bounded log queue dropped, from its ``N log records dropped``
    warnings (jrpc_unix/_server/logqueue.py)."""
    total = 0
    with log.open("rb") as f:
        for line in f:
            if b" log records dropped" in line:
                words = line.split(b" log records dropped", 1)[0].split()
                total += int(words[-1]) if words and words[-1].isdigit() else 0
    return total


def find_cli() -> str | None:
    """The jrpc-unix console script: on PATH, or next to this interpreter (an unactivated venv)."""
    beside = Path(sys.executable).parent / "jrpc-unix"
    return shutil.which("jrpc-unix") or (str(beside) if os.access(beside, os.X_OK) else None)


def measure_cli(plan: Plan, load_cpu: int | None, sock: str) -> dict[str, Any]:
    """Median wall time of ``jrpc-unix call SOCK ping`` vs ``python -c 'import socket, json'``."""
    cli = find_cli()
    if cli is None:
        return {"skipped": "the jrpc-unix console script is not on PATH (nor beside this python)"}
    call = [*pinned(load_cpu), cli, "call", sock, "ping"]
    bare = [*pinned(load_cpu), sys.executable, "-c", "import socket, json"]
    probe = subprocess.run(call, capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0 or "pong" not in probe.stdout:
        why = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}, stdout {probe.stdout!r}"])[-1]
        return {"skipped": f"`jrpc-unix call SOCK ping` does not work yet: {why}"}
    times: dict[str, list[float]] = {"bare": [], "cli": []}
    for _ in range(plan.cli_runs):
        for name, cmd in (("bare", bare), ("cli", call)):
            t0 = time.perf_counter()
            done = subprocess.run(
                cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30, check=False
            )
            times[name].append((time.perf_counter() - t0) * 1000)
            if done.returncode != 0:
                why = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
                return {"skipped": f"`{' '.join(cmd)}` failed (exit {done.returncode}): {why}"}
    bare_ms, cli_ms = statistics.median(times["bare"]), statistics.median(times["cli"])
    return {"cli": cli, "bare_ms": bare_ms, "cli_ms": cli_ms, "ratio": cli_ms / bare_ms, "runs": times}


def run_peers(args: argparse.Namespace, awake: bool) -> tuple[list[str], bool]:
    """benchmarks/peers.py with this run's counts and rounds: its table, and whether all went well."""
    cmd = [sys.executable, str(HERE / "peers.py"), "--rounds", str(args.rounds)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--keep-awake" if awake else "--no-keep-awake"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=3600, check=False)
    lines = proc.stdout.rstrip().splitlines()
    table = [ln for ln in lines if ln.startswith(("# peers", "|", "PROBLEM", "every call"))]
    if proc.returncode != 0:
        table.append(f"PROBLEM: peers.py exited {proc.returncode}: {proc.stderr.strip()[-800:]}")
    return table, proc.returncode == 0


def bring_up(plan: Plan, load_cpu: int | None, server: Server) -> None:
    """(Re)start a server and warm it up: first calls pay for imports and lazy setup."""
    server.stop()
    server.start()
    run_loadgen(plan, load_cpu, "pingpong", server.sock, "-n", str(max(200, plan.pingpong // 10)))
    run_loadgen(plan, load_cpu, "pingpong", server.sock, "-n", "100", "-s", str(plan.echo_bytes))
    run_loadgen(plan, load_cpu, "notify", server.sock, "-n", "100")
    if server.key == "audit" and not rpc(server.sock, "rpc.audit", {"limit": 1}):
        raise RuntimeError(f"{server.title}: the warm-up's calls left no audit record: audit is off")


def measure(
    plan: Plan, load_cpu: int | None, mode: str, server: Server, notes: list[str], when: str
) -> dict[str, Any]:
    """One measurement of ``mode``; measured again once if the server died under it."""
    for _attempt in range(2):
        if not server.alive():  # the machine is shared: someone may have killed it
            notes.append(f"{server.title} had exited ({server.status()}) before {when}; restarted it")
            bring_up(plan, load_cpu, server)
        elif mode in ("idle", "idle10k"):  # a fresh process each time: RSS is not inflated by earlier load
            bring_up(plan, load_cpu, server)
        if mode in ("idle", "idle10k"):
            result = measure_idle(plan.idle if mode == "idle" else plan.idle10k, load_cpu, server)
        elif mode == "paced":
            result = measure_paced(plan, load_cpu, server)
        elif mode in FRAMED_MODES:
            result = measure_framed(plan, load_cpu, mode, server)
        else:
            result = measure_load(plan, load_cpu, mode, server)
        if result["ok"] or server.alive():
            break
        notes.append(f"{server.title} died during {when}; measured it again")
    return result


# -- the table ----------------------------------------------------------------------------------


def check(op: str, value: float, target: float) -> bool:
    return {">=": value >= target, "<=": value <= target, "==": value == target}[op]


def verdict(got: dict[str, list[float]], ref: str | None, op: str, value: float) -> tuple[str, bool | None]:
    """A target as printed (``>= 1.1x raw``, ``<= raw + 3``, ``<= 30``) and whether the demo meets it."""
    if ref is None:
        return f"{op} {value:g}", check(op, statistics.median(got["demo"]), value) if "demo" in got else None
    if op == "+<=":  # within ``value`` (the row's unit) of the reference server's median
        met = None
        if "demo" in got and ref in got:
            met = statistics.median(got["demo"]) - statistics.median(got[ref]) <= value
        return f"<= {ref} + {value:g}", met
    r = ratio(got, "demo", ref)
    return f"{op} {value:g}x {ref}", None if r is None else check(op, r, value)


Series = dict[str, dict[str, list[float]]]  # row title -> server -> one figure per round


def ratio(got: dict[str, list[float]], a: str, b: str) -> float | None:
    """a's figure over b's: the median of the per-round ratios (each round ran them side by side)."""
    xs, ys = got.get(a), got.get(b)
    if not xs or not ys:
        return None
    if len(xs) == len(ys) and all(ys):
        return statistics.median(x / y for x, y in zip(xs, ys, strict=True))
    base = statistics.median(ys)
    return statistics.median(xs) / base if base else None


def table(series: Series, servers: list[str]) -> list[str]:
    """Markdown rows: medians per server, ratios vs raw trio (and naive), the demo's targets."""
    others = [s for s in servers if s != BASELINE]
    pairs = [(s, BASELINE) for s in others if BASELINE in servers]
    for other in ("naive", "nostats"):
        if "demo" in servers and other in servers:
            pairs.append(("demo", other))
    pairs += [(s, "demo") for s in ("aio", "uvloop", "audit") if s in servers and "demo" in servers]
    head = [
        "metric",
        *(SERVERS[s][0] for s in servers),
        *(f"{a}/{b}" for a, b in pairs),
        "target (demo)",
        "met",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS:
        got = series.get(row.title, {})
        if not got:
            continue
        cells = [row.title] + [
            row.fmt.format(statistics.median(got[s])) if s in got else "—" for s in servers
        ]
        for a, b in pairs:
            r = ratio(got, a, b)
            cells.append("—" if r is None else f"{r:.2f}x")
        goals, verdicts = [], []
        for ref, op, value in row.targets:
            goal, met = verdict(got, ref, op, value)
            goals.append(goal)
            if met is not None:
                verdicts.append(met)
        cells += ["; ".join(goals) or "", "" if not verdicts else "yes" if all(verdicts) else "**no**"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def cli_table(cli: dict[str, Any]) -> list[str]:
    """The whole-process CLI timing as a small markdown table (or why it was skipped)."""
    if "skipped" in cli:
        return [f"CLI whole process: skipped: {cli['skipped']}"]
    head = ["whole process, median wall ms", "python -c 'import socket, json'", "jrpc-unix call SOCK ping"]
    cells = ["CLI vs bare python", f"{cli['bare_ms']:.1f}", f"{cli['cli_ms']:.1f}", f"{cli['ratio']:.2f}x"]
    cells += ["<= 1.25x", "yes" if cli["ratio"] <= 1.25 else "**no**"]
    return [
        "| " + " | ".join([*head, "ratio", "target", "met"]) + " |",
        "|" + "---|" * len(cells),
        "| " + " | ".join(cells) + " |",
    ]


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny counts, 1 round: proves the harness works")
    p.add_argument(
        "--rounds",
        type=int,
        help="rounds per mode (default 5, at most 3 for idle10k and paced; 1 with --quick)",
    )
    p.add_argument("--only", help=f"comma-separated modes out of {','.join(MODES)}")
    p.add_argument(
        "--servers",
        default="raw,demo,naive,nostats,aio,uvloop,audit",
        help=f"comma-separated, out of {','.join(SERVERS)}",
    )
    p.add_argument("--json", type=Path, help="also write every figure to this file")
    p.add_argument(
        "--keep-awake",
        action=argparse.BooleanOptionalAction,
        help="SCHED_IDLE spinner per CPU during the run (default: on, off with --quick)",
    )
    p.add_argument("--hold", nargs=2, metavar=("SOCK", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.modes = [m.strip() for m in args.only.split(",")] if args.only else list(MODES)
    args.server_keys = [s.strip() for s in args.servers.split(",")]
    for name, picked, known in (("mode", args.modes, MODES), ("server", args.server_keys, SERVERS)):
        if bad := [x for x in picked if x not in known]:
            p.error(f"unknown {name}(s): {', '.join(bad)}")
    args.rounds = args.rounds or (1 if args.quick else 5)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.hold:
        return hold(args.hold[0], int(args.hold[1]))
    plan = QUICK if args.quick else Plan()
    awake = args.keep_awake if args.keep_awake is not None else not args.quick
    cpus = sorted(os.sched_getaffinity(0))
    pin = len(cpus) >= 2 and shutil.which("taskset") is not None
    server_cpu, load_cpu = (cpus[0], cpus[1]) if pin else (None, None)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # servers inherit it: room for idle conns
    need = max(plan.idle, plan.idle10k if "idle10k" in args.modes else 0) + 512
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, need)), hard))
    if hard < need:
        print(f"note: open files are limited to {hard} (hard): fewer idle connections will be held\n")
    build_loadgen()
    servers = args.server_keys
    where = (
        f"servers on CPU {server_cpu}, load on CPU {load_cpu}" if pin else "not pinned (1 CPU or no taskset)"
    )
    print(
        f"# jrpc-unix benchmarks: {machine()}; {len(cpus)} CPUs usable, {where}, "
        f"keep-awake {'on' if awake else 'off'}, {args.rounds} round(s), "
        f"{'quick' if args.quick else 'full'} counts; medians\n",
        flush=True,
    )

    runs: list[dict[str, Any]] = []
    notes: list[str] = []
    cli: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="jrpc-bench-") as tmp, keep_awake(awake):
        procs = {key: Server(key, Path(tmp), server_cpu) for key in servers}
        try:
            for proc in procs.values():
                bring_up(plan, load_cpu, proc)
            for mode in [m for m in args.modes if m not in ("cli", "peers")]:
                rounds = min(args.rounds, 3) if mode in LONG_MODES else args.rounds
                for rnd in range(rounds):
                    for key in servers:  # A B A B: every server under the same conditions
                        if not runs_mode(key, mode):
                            continue
                        when = f"{mode} round {rnd + 1}"
                        result = measure(plan, load_cpu, mode, procs[key], notes, when)
                        runs.append({**result, "server": key, "mode": mode, "round": rnd})
                        verdict = "ok" if result["ok"] else "PROBLEM: " + result["problem"]
                        print(f"  {mode:8} round {rnd + 1}/{rounds} {key:5}: {verdict}", flush=True)
            if "cli" in args.modes and "demo" in procs:
                if not procs["demo"].alive():
                    notes.append(
                        f"demo had exited ({procs['demo'].status()}) before the CLI timing; restarted it"
                    )
                    bring_up(plan, load_cpu, procs["demo"])
                cli = measure_cli(plan, load_cpu, procs["demo"].sock)
        finally:
            for proc in procs.values():
                proc.stop()
            if "audit" in procs and (dropped := dropped_log_lines(procs["audit"].log)):
                notes.append(
                    f"{SERVERS['audit'][0]}: {dropped:,} log records dropped in all (its bounded log queue "
                    "was full: the handlers wrote slower than calls came), so fewer audit lines were "
                    "written than calls made"
                )

    series: Series = {}
    for row in ROWS:
        for key in servers:
            values = [row.get(r) for r in runs if r["server"] == key and r["mode"] == row.mode]
            if values:
                series.setdefault(row.title, {})[key] = values
    for r in runs:
        if r.get("note"):
            notes.append(f"{SERVERS[r['server']][0]}, {r['mode']}: {r['note']}")
        if r["mode"] in ("idle", "idle10k") and (r.get("rejected") or r.get("error")):
            held = sorted({x["held"] for x in runs if x["mode"] == r["mode"] and x["server"] == r["server"]})
            notes.append(
                f"{SERVERS[r['server']][0]} refused idle connections (a connection limit?): it held "
                f"{'/'.join(map(str, held))} of {r['conns']}, so its RSS figure is for that many"
            )
        if r.get("cpu_s", 0) > 0.8 * r.get("elapsed_s", 1e9):
            notes.append(
                f"loadgen used {r['cpu_s'] / r['elapsed_s']:.0%} of its CPU in {r['mode']} vs "
                f"{r['server']}: it may be the bottleneck there"
            )
    problems = [
        f"{r['mode']} vs {r['server']} round {r['round'] + 1}: {r['problem']}" for r in runs if not r["ok"]
    ]

    print()
    print("\n".join(table(series, servers)))
    if cli:
        print()
        print("\n".join(cli_table(cli)))
    peers: list[str] = []
    if "peers" in args.modes:
        print(flush=True)
        peers, peers_ok = run_peers(args, awake)
        print("\n".join(peers).replace("\n|", "\n\n|", 1))
        if not peers_ok:
            problems.append("benchmarks/peers.py reported a problem (above)")
    for line in dict.fromkeys(notes):
        print(f"\nnote: {line}")
    for line in problems:
        print(f"\nPROBLEM: {line}")
    print(
        f"\n{'PROBLEMS: ' + str(len(problems)) if problems else 'all calls answered, no errors, none lost'}"
    )
    if args.json:
        report = {
            "plan": asdict(plan),
            "rounds": args.rounds,
            "pinned": pin,
            "keep_awake": awake,
            "servers": servers,
            "series": series,
            "medians": {t: {k: statistics.median(v) for k, v in got.items()} for t, got in series.items()},
            "ratios_vs_raw": {t: {k: ratio(got, k, BASELINE) for k in got} for t, got in series.items()},
            "cli": cli,
            "peers_table": peers,
            "runs": runs,
            "notes": list(dict.fromkeys(notes)),
            "problems": problems,
        }
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
