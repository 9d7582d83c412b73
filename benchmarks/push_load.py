"""What subscriptions cost the server: memory of stalled subscribers, latency under many.

Starts the demo service (``examples/demo_server.py``) and, from this process, opens
subscriptions to the built-in ``stats`` topic over raw sockets, then reports figures:

    python benchmarks/push_load.py stalled --subs 300 --per-conn 60 --seconds 45
    python benchmarks/push_load.py latency --subs 20000 --per-conn 20000 --drain

``stalled``: subscribers that never read (``interval`` 0.05, ``queue_size`` 10000, the worst a
caller may ask); the server's RSS is sampled every 5 s. ``latency``: while the subscriptions
are open (read, with ``--drain``, or not), another client pings once every 10 ms; its round
trips are reported (p50, p99, max). Subscriptions the server refuses are counted, not retried.
Needs nothing but the standard library and the server; figures mean something only on a
quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "demo_server.py"


#: Called once each before subscribing, so that the figures (what a stats event carries) have
#: the entries of a service in use.
WARM_UP = [
    ("ping", None),
    ("echo", ["x"]),
    ("subtract", [2, 1]),
    ("sum", [1, 2]),
    ("get_data", None),
    ("config.get", ["level"]),
    ("counter.get", None),
    ("rpc.stats", None),
    ("rpc.topics", None),
    ("rpc.discover", None),
]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def warm_up(path: str) -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    with s, s.makefile("rb") as answers:
        for i, (method, params) in enumerate(WARM_UP):
            req = {"jsonrpc": "2.0", "method": method, "id": i}
            if params is not None:
                req["params"] = params
            s.sendall(json.dumps(req).encode() + b"\n")
            answers.readline()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def subscribe_all(path: str, subs: int, per_conn: int, interval: float) -> tuple[list[socket.socket], int]:
    """Open ``subs`` stats subscriptions, ``per_conn`` per connection; (sockets, refused)."""
    conns: list[socket.socket] = []
    refused = 0
    left = subs
    while left > 0:
        n = min(per_conn, left)
        left -= n
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        try:
            s.connect(path)
        except OSError as exc:
            print(f"connect failed: {exc}", file=sys.stderr)
            refused += n
            continue
        params = {"topic": "stats", "interval": interval, "queue_size": 10000}
        buf = b""
        for start in range(0, n, 100):  # a step at a time, reading answers (and events) between
            step = range(start, min(n, start + 100))
            s.sendall(
                b"".join(
                    json.dumps(
                        {"jsonrpc": "2.0", "method": "rpc.subscribe", "params": params, "id": i}
                    ).encode()
                    + b"\n"
                    for i in step
                )
            )
            answers = 0
            while answers < len(step):
                chunk = s.recv(1 << 16)
                if not chunk:
                    refused += n - start - answers
                    left = 0
                    break
                buf += chunk
                *done, buf = buf.split(b"\n")
                for line in done:
                    msg = json.loads(line)
                    if "id" in msg:
                        answers += 1
                        refused += "error" in msg
            else:
                continue
            break
        conns.append(s)
    return conns, refused


def drain(s: socket.socket, stop: threading.Event, counts: list[int]) -> None:
    s.settimeout(0.2)
    while not stop.is_set():
        try:
            chunk = s.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            return
        if not chunk:
            return
        counts[0] += chunk.count(b"\n")


def pings(path: str, count: int) -> list[float]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(path)
    out: list[float] = []
    for i in range(count):
        t0 = time.perf_counter()
        s.sendall(json.dumps({"jsonrpc": "2.0", "method": "ping", "id": i}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                raise SystemExit(f"the server closed the ping connection: {buf!r}")
            buf += chunk
        if b'"result"' not in buf:
            raise SystemExit(f"ping failed: {buf!r}")
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.01)
    s.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenario", choices=["stalled", "latency"])
    ap.add_argument("--subs", type=int, default=300)
    ap.add_argument("--per-conn", type=int, default=60)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--seconds", type=float, default=45)
    ap.add_argument("--pings", type=int, default=300)
    ap.add_argument("--drain", action="store_true", help="latency: the subscribers read their events")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="jp", dir="/tmp") as d:
        path = os.path.join(d, "s.sock")
        log = open(os.path.join(d, "log"), "wb")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, str(DEMO), path], stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(path):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit(f"the demo did not start; see {d}/log")
                time.sleep(0.01)
            warm_up(path)
            base = rss_mib(proc.pid)
            conns, refused = subscribe_all(path, args.subs, args.per_conn, args.interval)
            print(
                f"server RSS {base:.1f} MiB before; {args.subs - refused} subscriptions open "
                f"on {len(conns)} connections, {refused} refused"
            )
            if args.scenario == "stalled":
                t0 = time.monotonic()
                while (elapsed := time.monotonic() - t0) < args.seconds:
                    time.sleep(min(5.0, args.seconds - elapsed))
                    print(f"  t={time.monotonic() - t0:4.0f} s  RSS {rss_mib(proc.pid):7.1f} MiB")
            else:
                stop, counts = threading.Event(), [0]
                readers = [threading.Thread(target=drain, args=(s, stop, counts)) for s in conns]
                readers = readers if args.drain else []
                for r in readers:
                    r.start()
                time.sleep(1.0)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                rtts = sorted(pings(path, args.pings))
                cpu = (cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0) * 100
                stop.set()
                for r in readers:
                    r.join()
                p99 = rtts[int(len(rtts) * 0.99) - 1]
                state = "reading" if args.drain else "stalled"
                print(
                    f"ping of another client ({len(rtts)} pings, subscribers {state}): "
                    f"p50 {statistics.median(rtts):.2f} ms, p99 {p99:.2f} ms, max {rtts[-1]:.2f} ms; "
                    f"server CPU {cpu:.0f} %, RSS {rss_mib(proc.pid):.1f} MiB; events read {counts[0]}"
                )
            for s in conns:
                s.close()
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
