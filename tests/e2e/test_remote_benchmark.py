"""``benchmarks/remote.py --quick`` works (sshd, ControlMaster, 50 targets); it never judges speed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers.sshd import available

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(available() is not None, reason=str(available()))
def test_remote_benchmark_harness() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "remote.py"), "--quick"], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    rows = [
        line for line in done.stdout.decode().splitlines() if line.startswith("| ") and "ms |" not in line
    ]
    titles = [row.split("|")[1].split(":")[0].strip() for row in rows]
    assert titles == ["local", "ssh", "ssh+ControlMaster", "50 targets one by one (50 commands)",
                      "fan-out of 50 (one command, --parallel 16)"], rows  # fmt: skip
    assert all(float(row.rstrip(" |").rpartition("|")[2]) > 0 for row in rows)
