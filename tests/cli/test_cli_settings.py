"""``jrpc-unix settings`` / ``set`` / ``revert`` against the demo as a real process (issue 12)."""

from __future__ import annotations

import json

import pytest
from helpers import DemoProcess
from helpers.terminal import on_terminal

from jrpc_unix._cli.main import main


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_set_settings_diff_log_revert(demo: DemoProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "set", demo.path, "workers=8", "greeting=hi there", "--expect-version", "0")
    assert (code, err) == (0, "")
    done = json.loads(out)
    assert done["version"] == 1
    assert done["changes"] == [
        {"name": "workers", "old": 4, "new": 8},
        {"name": "greeting", "old": "hello", "new": "hi there"},
    ]
    code, out, _ = cli(capsys, "set", demo.path, "workers=9", "--dry-run")
    assert json.loads(out)["applied"] is False
    code, out, err = cli(capsys, "settings", demo.path)  # piped: JSON rows
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["workers"] == {"name": "workers", "value": 8, "default": 4, "source": "runtime"}
    assert rows["rate_limit"]["source"] == "default"
    assert [d["name"] for d in json.loads(cli(capsys, "settings", demo.path, "--diff")[1])] == [
        "greeting",
        "workers",
    ]
    log = json.loads(cli(capsys, "settings", demo.path, "--log", "--limit", "1")[1])
    assert [e["version"] for e in log] == [1]
    described = json.loads(cli(capsys, "settings", demo.path, "--describe")[1])
    assert described[0]["name"] == "log_level"
    assert described[0]["schema"] == {"enum": ["debug", "info", "warning", "error"]}
    code, out, err = cli(capsys, "revert", demo.path, "0")
    assert (code, err) == (0, "")
    assert json.loads(out)["version"] == 2


def test_invalid_values_exit_1_with_every_reason(
    demo: DemoProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "set", demo.path, "workers=0", "log_level=loud", "nope=1")
    assert (code, out) == (1, "")
    assert err.splitlines() == [
        "error [-32602] Invalid params",
        "  workers: must be >= 1, got 0",
        "  log_level: expected one of 'debug', 'info', 'warning', 'error', got 'loud'",
        "  nope: no such setting",
    ]
    code, _, err = cli(capsys, "set", demo.path, "workers=5", "--expect-version", "7")
    assert code == 1
    assert err.splitlines() == ["error [-32010] Settings version conflict", '  data: {"version":0}']
    code, _, err = cli(capsys, "set", demo.path, "workers")
    assert code == 2
    assert "'workers' is not NAME=VALUE" in err


def test_settings_table_on_a_terminal(demo: DemoProcess) -> None:
    code, out, _ = on_terminal("settings", demo.path, stdout=True)
    assert code == 0
    lines = out.decode().replace("\r\n", "\n").splitlines()
    assert lines[0].split() == ["NAME", "VALUE", "DEFAULT", "SOURCE"]
    assert lines[3].split() == ["workers", "4", "4", "default"]
    assert lines[5].split() == ["api_token", '""', '""', "default"]  # root is admin: not redacted
