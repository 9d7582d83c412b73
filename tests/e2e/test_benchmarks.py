"""The benchmark harness works: ``benchmarks/run.py --quick`` drives every mode against every server.

This proves the harness (loadgen builds, servers start, answers are checked, nothing is lost,
the table is complete). It never judges speed: CI machines are too noisy for that.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVERS = ("raw", "demo", "naive", "aio", "uvloop", "audit")
MODES = ("pingpong", "pipeline", "conns", "notify", "echo", "idle", "idle10k", "paced")
#: The modes some servers run only (benchmarks/run.py, SERVER_MODES): the asyncio-hosted demos,
#: and the demo with audit on.
ONLY_MODES = {
    "aio": ("pingpong", "pipeline", "conns", "notify", "echo", "idle"),
    "uvloop": ("pingpong", "pipeline", "conns", "notify", "echo", "idle"),
    "audit": ("pingpong", "pipeline", "notify"),
}
#: The other framings' modes (loadgen -f) -> the framing; on the demo's own servers only.
FRAMED_MODES = {
    "go_pingpong": "unixsock",
    "go_pipeline": "unixsock",
    "lsp_pingpong": "lsp",
    "lsp_pipeline": "lsp",
    "lsp_notify": "lsp",
    "seq_pingpong": "json-seq",
    "seq_pipeline": "json-seq",
    "seq_notify": "json-seq",
}
ROWS = (  # the start of each metric's row title in the table
    "ping-pong, 1 conn: calls/s",
    "ping-pong: p50",
    "ping-pong: p99",
    "pipelined, window 64: calls/s",
    "16 conns in parallel: calls/s",
    "notification burst: notifications/s",
    "notifications lost",
    "echo 1 KiB: calls/s",
    "echo 1 KiB: p99",
    "idle conns: RSS MiB before opening",
    "idle conns: RSS MiB in all",
    "idle conns: KiB per conn",
    "idle conns: held open",
    "10,000 idle conns: RSS MiB in all",
    "10,000 idle conns: KiB per conn",
    "10,000 idle conns: held open",
    "10,000 idle conns: not held (refused, failed)",
    "paced, 1 conn x 10 calls/s: p99",
    "paced, 1,000 conns x 10 calls/s: p99",
    "paced, p99 1,000 conns / 1 conn",
    *(
        f"{name} {row}"
        for name in ("Go frames", "LSP", "json-seq")
        for row in (
            "ping-pong, 1 conn: calls/s",
            "ping-pong: p99",
            "ping-pong / newline",
            "pipelined, window 64: calls/s",
            "pipelined / newline",
        )
    ),
    *(
        f"{name} {row}"
        for name in ("LSP", "json-seq")
        for row in (
            "notification burst: notifications/s",
            "notification burst / newline",
            "notifications lost",
        )
    ),
)

pytestmark = pytest.mark.skipif(
    shutil.which("gcc") is None, reason="gcc is needed to build benchmarks/loadgen.c"
)


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    report = tmp_path_factory.mktemp("bench") / "report.json"
    cmd = [sys.executable, str(REPO / "benchmarks" / "run.py"), "--quick", "--json", str(report)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc, json.loads(report.read_text())


def test_prints_the_table_with_every_mode(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, object]],
) -> None:
    out = quick_run[0].stdout
    head = "| metric | raw trio | demo | naive asyncio | demo, no method stats | demo on asyncio |"
    assert head in out
    assert "| demo on uvloop | demo, audit on | demo/raw | naive/raw | nostats/raw | aio/raw |" in out
    assert (
        "| uvloop/raw | audit/raw | demo/naive | demo/nostats | aio/demo | uvloop/demo | audit/demo |" in out
    )
    for title in ROWS:
        assert re.search(rf"^\| {re.escape(title)}[^|]* \|( [^|]+ \|){{9}}", out, re.MULTILINE), title
    assert re.search(r"^\| notifications lost \| 0 \| 0 \| 0 \| 0 \| 0 \| 0 \| 0 \|", out, re.MULTILINE)
    # the audit column and the framings' ratios to newline hold figures, not dashes
    assert re.search(r"^\| ping-pong, 1 conn: calls/s( \| [0-9,]+){7} \|", out, re.MULTILINE)
    for name in ("Go frames", "LSP", "json-seq"):
        assert re.search(rf"^\| {name} pipelined / newline \| — \| [0-9.]+x \|", out, re.MULTILINE)
    assert re.search(r"^(\| CLI vs bare python \||CLI whole process: skipped: )", out, re.MULTILINE)
    assert "all calls answered, no errors, none lost" in out
    # the peers' table (benchmarks/peers.py, tested in test_peers_benchmark.py) from the same run
    assert re.search(r"^\| jrpc-unix \(blocking Client\) \| [^|]+ \| [0-9,]+ \|", out, re.MULTILINE)
    assert re.search(r"^\| stdlib floor [^|]+ \| [^|]+ \| [0-9,]+ \|", out, re.MULTILINE)


def test_every_run_answered_everything(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, object]],
) -> None:
    report = quick_run[1]
    assert report["problems"] == []
    runs = report["runs"]
    assert isinstance(runs, list)
    for mode in MODES:
        for server in SERVERS:
            found = [r for r in runs if r["mode"] == mode and r["server"] == server]
            if mode not in ONLY_MODES.get(server, MODES):
                assert found == []
                continue
            (run,) = found
            assert run["ok"], run
            if mode in ("idle", "idle10k"):
                assert run["held"] == run["conns"] > 0
                assert run["rss_kib"] > 0
                continue
            if mode == "paced":  # the same pace on 1 connection, then on many
                assert run["one"]["conns"] == 1 < run["many"]["conns"]
                for paced in (run["one"], run["many"]):
                    assert paced["errors"] == paced["missing"] == 0
                    assert paced["answered"] == paced["calls"] > 0
                    assert paced["lat_us"]["p99"] > 0
                continue
            assert run["errors"] == 0
            assert run["missing"] == 0
            assert run["answered"] == run["calls"] > 0
            if mode == "notify":
                assert run["lost"] == 0
                assert run["notifications"] > 0


def test_every_framing_ran_beside_newline(
    quick_run: tuple[subprocess.CompletedProcess[str], dict[str, object]],
) -> None:
    """Each other framing's run spoke that framing (loadgen says which), right after the same
    load in newline JSON on the same server: both answered everything, none lost."""
    runs = quick_run[1]["runs"]
    assert isinstance(runs, list)
    for mode, framing in FRAMED_MODES.items():
        for server in SERVERS:
            found = [r for r in runs if r["mode"] == mode and r["server"] == server]
            if server not in ("demo", "nostats"):
                assert found == []
                continue
            (run,) = found
            assert run["ok"], run
            assert run["vs_newline"] > 0
            for result, spoken in ((run, framing), (run["newline"], "newline")):
                assert result["framing"] == spoken
                assert result["errors"] == result["missing"] == 0
                assert result["answered"] == result["calls"] > 0
                if mode.endswith("_notify"):
                    assert result["lost"] == 0
                    assert result["notifications"] > 0
