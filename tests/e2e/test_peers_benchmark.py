"""The peers harness works: ``benchmarks/peers.py --quick`` drives every installed peer.

CI installs only the test extra, so there it measures this project and the stdlib floor and
lists every other peer as skipped (the ``bench`` extra is for the lead's full run). It proves
the harness (servers start, every answer checked, the table complete); it never judges speed.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("peer_impls", REPO / "benchmarks" / "peer_impls.py")
assert _spec is not None
assert _spec.loader is not None
_impls = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_impls)  # (it imports no peer's package)
PEERS: dict[str, tuple[str, str | None]] = _impls.PEERS  # peer -> its title, the modules it needs


def test_quick_run_measures_the_installed_peers_and_skips_the_others(tmp_path: Path) -> None:
    report = tmp_path / "peers.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "peers.py"), "--quick", "--json", str(report)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out, got = proc.stdout, json.loads(report.read_text())
    assert got["problems"] == []
    assert "every call answered correctly" in out
    assert out.startswith("# peers: ")
    assert "Python 3." in out.splitlines()[0]  # the machine named
    header = "| peer | version | calls/s | CPU µs/call | server µs | client µs | jrpc-unix CPU / peer's |"
    assert header in out
    for peer, (title, module) in PEERS.items():
        row = next(line for line in out.splitlines() if line.startswith(f"| {title} |"))
        assert row.count("|") == 10, row
        if module is None:  # this project and the stdlib floor: always measured
            assert peer not in got["skipped"]
        elif any(importlib.util.find_spec(m) is None for m in module.split(",")):
            assert peer in got["skipped"]
        else:
            assert peer not in got["skipped"]
        if peer in got["skipped"]:
            assert "skipped: " in row, row
            assert "not installed" in row, row
            continue
        (run,) = got["results"][peer]
        assert run["ok"], run
        assert run["calls_per_s"] > 0, run


def test_an_unknown_peer_is_a_usage_error() -> None:
    cmd = [sys.executable, str(REPO / "benchmarks" / "peers.py"), "--quick", "--peers", "jrpc,corba"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "unknown peer(s): corba" in proc.stderr
