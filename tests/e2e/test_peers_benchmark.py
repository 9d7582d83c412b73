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
PEERS = {  # peer -> (its title in the table, the module it needs)
    "jrpc": ("jrpc-unix (blocking Client)", None),
    "stdlib": ("stdlib floor (socketserver + newline JSON)", None),
    "varlink": ("python-varlink", "varlink"),
    "grpc": ("grpcio (sync server)", "grpc"),
    "grpc-aio": ("grpcio (grpc.aio server)", "grpc"),
    "pyro5": ("Pyro5", "Pyro5"),
    "rpyc": ("RPyC", "rpyc"),
    "fastapi": ("FastAPI on uvicorn --uds", "fastapi"),  # (and uvicorn)
}


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
        elif importlib.util.find_spec(module) is None:
            assert peer in got["skipped"]
        if peer in got["skipped"]:  # (also fastapi without uvicorn)
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
