"""The figures of issue 13 in one run: a call over ssh with and without ControlMaster, and a
fan-out of one call to 50 local targets against the same calls made one by one.

    python benchmarks/remote.py            # 20 calls per figure (medians), root, OpenSSH installed
    python benchmarks/remote.py --quick    # 2 calls per figure: proves the harness works

Starts the demo service and a throw-away sshd on 127.0.0.1 (tests/helpers/sshd.py: its own
keys and config), and times whole ``jrpc-unix`` command lines (what an operator runs):

* ``local``: ``jrpc-unix call SOCK ping``;
* ``ssh``: ``jrpc-unix call ssh://jrpc-remote@h1/SOCK ping``: a new ssh connection each time
  (key exchange, authentication, a session, the remote ``/bin/sh`` and the inline python3 relay),
  as the tests' unprivileged login user: a host with only sshd and python3;
* ``ssh+ControlMaster``: the same through a master connection opened beforehand (``cm``);
* ``50 one by one``: 50 ``jrpc-unix call`` commands in a row, one per target;
* ``fan-out of 50``: one ``jrpc-unix call 't[01-50].sock' ping`` (16 at once).

The 50 targets are 50 names (symlinks) of one demo service: the figure is the client's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from helpers import DemoProcess  # noqa: E402  (the tests' helpers: one sshd fixture, not two)
from helpers.sshd import REMOTE_USER, available, start_sshd  # noqa: E402

CLI = [sys.executable, "-m", "jrpc_unix"]


def timed(argv: list[str], env: dict[str, str]) -> float:
    """Milliseconds for one command line, which must succeed."""
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, timeout=60)
    took = (time.perf_counter() - start) * 1000
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode(errors='replace')}")
    return took


def median_ms(argv: list[str], env: dict[str, str], runs: int) -> float:
    return statistics.median(timed(argv, env) for _ in range(runs))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 calls per figure")
    args = parser.parse_args(argv)
    runs = 2 if args.quick else 20
    why = available()
    if why is not None:
        print(f"skipped: {why}")
        return 0
    with tempfile.TemporaryDirectory(prefix="jb", dir="/tmp") as tmp:
        base = Path(tmp)
        (base / "ssh").mkdir()
        sshd = start_sshd(base / "ssh")
        demo = DemoProcess(str(base / "demo.sock"), str(base / "demo.log"))
        try:
            env = sshd.env
            base.chmod(0o755)  # the login user connects to the demo's socket
            os.chmod(demo.path, 0o666)
            user = REMOTE_USER
            for n in range(1, 51):
                os.symlink(base / "demo.sock", base / f"t{n:02d}.sock")
            rows: list[tuple[str, float]] = [
                ("local: jrpc-unix call SOCK ping", median_ms([*CLI, "call", demo.path, "ping"], env, runs)),
                (
                    "ssh: jrpc-unix call ssh://USER@h1/SOCK ping",
                    median_ms([*CLI, "call", f"ssh://{user}@h1{demo.path}", "ping"], env, runs),
                ),
            ]
            timed([*CLI, "call", f"ssh://{user}@cm{demo.path}", "ping"], env)  # opens the master
            cm = median_ms([*CLI, "call", f"ssh://{user}@cm{demo.path}", "ping"], env, runs)
            rows.append(("ssh+ControlMaster: the same through a master", cm))
            subprocess.run(
                ["ssh", "-F", str(sshd.config), "-l", user, "-O", "exit", "cm"], capture_output=True
            )
            one_by_one = [
                sum(timed([*CLI, "call", str(base / f"t{n:02d}.sock"), "ping"], env) for n in range(1, 51))
                for _ in range(max(runs // 10, 1))
            ]
            rows.append(("50 targets one by one (50 commands)", statistics.median(one_by_one)))
            fan = median_ms([*CLI, "call", str(base / "t[01-50].sock"), "ping"], env, max(runs // 2, 1))
            rows.append(("fan-out of 50 (one command, --parallel 16)", fan))
        finally:
            demo.close()
            sshd.stop()
    print(f"| what ({runs} runs, median) | ms |\n|---|---:|")
    for what, ms in rows:
        print(f"| {what} | {ms:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
