"""``jrpc-unix`` fan-out: several targets (lists, node sets, ``--targets``), NDJSON when piped,
grouped answers on a terminal, the exit status's precedence, and a 100-target run's bounds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import TIMEOUT, DemoProcess
from helpers.ops import basic_methods, served
from helpers.sshd import Sshd
from helpers.terminal import on_terminal

CLI = [sys.executable, "-m", "jrpc_unix"]


def run(*argv: str, stdin: bytes = b"") -> tuple[int, list[dict[str, Any]], str]:
    done = subprocess.run([*CLI, *argv], input=stdin, capture_output=True, timeout=TIMEOUT * 3)
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()], done.stderr.decode()


@pytest.fixture
def two_servers(sock_dir: str) -> Iterator[tuple[str, str]]:
    """``a.sock`` answers; ``b.sock``'s ``ping`` answers an error."""
    broken = basic_methods()

    @broken.add("ping", replace=True)
    def failing_ping() -> None:
        raise RuntimeError("disk full")

    a, b = os.path.join(sock_dir, "a.sock"), os.path.join(sock_dir, "b.sock")
    with served(a, basic_methods()), served(b, broken):
        yield a, b


def test_five_ssh_targets_one_down_one_error(
    sshd: Sshd, monkeypatch: pytest.MonkeyPatch, two_servers: tuple[str, str]
) -> None:
    monkeypatch.setenv("JRPC_UNIX_SSH", f"ssh -F {sshd.config}")
    a, b = two_servers
    down = os.path.join(os.path.dirname(a), "down.sock")
    targets = f"ssh://h[1-3]{a},ssh://h4{b},ssh://h5{down}"
    code, lines, err = run("call", targets, "ping")
    assert code == 3, err  # unreachable outranks an error answer
    by_target = {line.pop("target"): line for line in lines}
    assert set(by_target) == {f"ssh://h{n}{a}" for n in (1, 2, 3)} | {f"ssh://h4{b}", f"ssh://h5{down}"}
    assert all(isinstance(line.pop("ms"), float) for line in lines)
    assert [by_target[f"ssh://h{n}{a}"] for n in (1, 2, 3)] == [{"result": "pong"}] * 3
    assert by_target[f"ssh://h4{b}"]["error"]["code"] < 0
    unreachable = by_target[f"ssh://h5{down}"]["error"]
    assert unreachable["unreachable"] is True
    assert "down.sock: No such file" in unreachable["message"]
    assert "5 targets: 3 ok, 1 answered an error, 1 unreachable" in err

    code, shown, _ = on_terminal("call", targets.rpartition(",")[0], "ping", stdout=True)
    assert code == 1  # no target unreachable: some answered an error
    text = shown.decode()
    assert f"ssh://h1{a},ssh://h2{a},ssh://h3{a} (3)\n" in text
    assert '\n"pong"\n' in text
    assert f"ssh://h4{b} (1)\n" in text
    assert "error [" in text
    assert text.rstrip().splitlines()[-1].startswith("4 targets: 3 ok, 1 answered an error, 0 unreachable; ")


def test_targets_file_and_commands(two_servers: tuple[str, str], sock_dir: str) -> None:
    a, _ = two_servers
    listing = os.path.join(sock_dir, "targets")
    with open(listing, "w") as out:
        out.write(f"# two names for one server\n{a}\n{a}\n")
    code, lines, _ = run("call", "--targets", listing, "echo", "msg=hi")
    assert (code, [(line["target"], line["result"]) for line in lines]) == (0, [(a, "hi")] * 2)
    code, lines, _ = run("notify", "--targets", listing, "echo", "x")
    assert (code, [line["result"] for line in lines]) == (0, [None, None])
    code, lines, _ = run("batch", "--targets", listing, stdin=b"ping\necho x\n")
    assert code == 0
    assert [line["result"][1]["result"] for line in lines] == ["x", "x"]
    code, lines, _ = run("stats", "--targets", listing, "--parallel", "1")
    assert code == 0
    assert all("server" in line["result"] for line in lines)


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["call", "--targets", "/nonexistent/list", "ping"], "--targets /nonexistent/list: No such file"),
        (["call", "/a[2-1]", "ping"], "not a range"),
        (["call", "/a,/b"], "the following arguments are required: METHOD"),
        (["call", "--targets", "/etc/hostname"], "the following arguments are required: METHOD"),
        (["stats", "--targets", "/etc/hostname", "extra"], "unrecognized arguments: extra"),
        (["call", "/a,/b", "ping", "--parallel", "0"], "at least 1"),
    ],
)
def test_fan_out_usage_errors(argv: list[str], said: str) -> None:
    code, _, err = run(*argv)
    assert code == 2
    assert said in err


def test_max_fail_reports_targets_not_started(two_servers: tuple[str, str], sock_dir: str) -> None:
    a, _ = two_servers
    down = os.path.join(sock_dir, "down.sock")
    code, lines, err = run("call", f"{down},{down},{a},{a}", "ping", "--parallel", "1", "--max-fail", "2")
    assert code == 3
    assert [line["target"] for line in lines] == [down, down]
    assert "2 not started" in err


#: Runs a command; then its peak RSS (kB) as the last line of stderr.
PEAK = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
    "sys.stderr.write(f'\\npeak_kb={peak}\\n'); sys.exit(code)"
)


def peak_kb(*argv: str) -> tuple[int, bytes, int]:
    done = subprocess.run([sys.executable, "-c", PEAK, *CLI, *argv], capture_output=True, timeout=TIMEOUT * 3)
    err, _, peak = done.stderr.rpartition(b"peak_kb=")
    assert done.returncode == 0, err
    return done.returncode, done.stdout, int(peak)


def test_a_hundred_targets_in_bounded_time_and_memory(two_servers: tuple[str, str], sock_dir: str) -> None:
    """100 names for one local server (symlinks): all answer, within the subprocess timeout, and
    the CLI's peak RSS stays near one call's (``--parallel`` threads at most, not 100)."""
    a, _ = two_servers
    for n in range(1, 101):
        os.symlink(a, os.path.join(sock_dir, f"t{n:03d}.sock"))
    _, _, one = peak_kb("call", a, "ping")
    _, out, many = peak_kb("call", os.path.join(sock_dir, "t[001-100].sock"), "ping")
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(line["target"] for line in lines) == [
        os.path.join(sock_dir, f"t{n:03d}.sock") for n in range(1, 101)
    ]
    assert {line["result"] for line in lines} == {"pong"}
    print(f"peak RSS: one call {one} kB, 100 targets {many} kB")
    assert many < one + 16 * 1024, (one, many)


def test_settings_and_set_fan_out(demo: DemoProcess, sock_dir: str) -> None:
    two = f"{demo.path},{demo.path}"
    code, lines, err = run("set", two, "workers=8", "--dry-run")
    assert code == 0, err
    assert len(lines) == 2
    code, lines, _ = run("set", two, "workers=1000")
    assert code == 1  # both answered the invalid-values error, its reasons in the data
    assert {line["error"]["code"] for line in lines} == {-32602}
    code, lines, _ = run("settings", two)
    assert code == 0
    assert all(
        {"name": "workers", "value": 4, "default": 4, "source": "default"} in line["result"] for line in lines
    )
