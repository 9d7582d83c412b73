"""The man page (issue 15): generated from the parser; the shipped copy must be current."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from jrpc_unix._cli.manpage import manpage

SHIPPED = Path(__file__).parents[2] / "jrpc_unix" / "_cli" / "jrpc-unix.1"


def test_the_shipped_man_page_is_what_the_parser_generates() -> None:
    assert SHIPPED.read_text() == manpage(), (
        "the man page is stale: python -m jrpc_unix._cli.manpage > jrpc_unix/_cli/jrpc-unix.1"
    )


def test_it_documents_every_command_and_the_environment() -> None:
    text = manpage()
    for command in ("call", "notify", "batch", "methods", "stats", "watch", "serve", "demo", "completion"):
        assert f"\n.SS {command}\n" in text
    assert "JRPC_UNIX_SOCKET" in text
    assert "\\-\\-connect\\-timeout SECONDS" in text


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_renders_it_without_warnings() -> None:
    done = subprocess.run(
        ["man", "-l", str(SHIPPED)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MANWIDTH": "80"},
    )
    assert done.returncode == 0
    assert done.stderr == ""
    assert "jrpc-unix call [-h] [-v]" in done.stdout.replace("\u2010", "-")  # man may set hyphens
