"""``benchmarks/micro.py --quick`` runs every row of specs/performance.md's tables.

It proves each row still measures code that exists (a renamed constant or method breaks it
here, not months later). It never judges speed: the figures of a quick run mean nothing.
"""

from __future__ import annotations

import subprocess
import sys

from helpers import ROOT


def test_every_row_runs_and_performance_md_names_each_one() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "micro.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("| ") and "----" not in line]
    rows = [line[2:].split(" | ")[0].strip() for line in lines[1:]]  # past the header
    text = (ROOT / "specs" / "performance.md").read_text()
    tables = text[text.index("## The server's hot path") : text.index("## Memory")]
    #: the last cell of each table row: the name of its micro.py row (or, in backquotes, a test)
    cells = [line.rsplit(" | ", 1)[1].rstrip(" |") for line in tables.splitlines() if line.startswith("| ")]
    keys = [cell for cell in cells if cell != "`micro.py` row" and not cell.startswith("`")]
    assert len(rows) == len(set(rows)) == 26
    for row in rows:
        assert [key for key in keys if key in row], f"specs/performance.md has no row for {row!r}"
    for key in keys:
        assert [row for row in rows if key in row], f"micro.py has no row {key!r}"
