"""Shell completion (issue 15): generated from the parser, with method, parameter and topic
names from the live socket's ``rpc.discover``/``rpc.topics``, cached per socket."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import TIMEOUT, DemoProcess

from jrpc_unix._cli.complete import candidates
from jrpc_unix._cli.main import main
from jrpc_unix._cli.parser import build_parser

SCRIPT_DIR = Path(sys.executable).parent  # where the jrpc-unix console script is


@pytest.fixture
def cache(sock_dir: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("XDG_CACHE_HOME", sock_dir)
    monkeypatch.delenv("JRPC_UNIX_SOCKET", raising=False)
    return os.path.join(sock_dir, "jrpc-unix")


def test_commands_options_and_choices(cache: str) -> None:
    parser = build_parser()
    assert candidates(parser, ["c"]) == ["call", "completion", "connections"]
    assert "--connect-timeout" in candidates(parser, ["call", "--c"])
    assert candidates(parser, ["serve", "x", "y", "--mode", ""]) == ["concurrent", "serial"]
    assert candidates(parser, ["completion", ""]) == ["bash", "zsh", "fish"]
    assert candidates(parser, ["call", "/nonexistent-dir/"]) == []


def test_names_from_the_live_socket(shared_demo: DemoProcess, cache: str) -> None:
    parser = build_parser()
    sock = shared_demo.path
    assert candidates(parser, ["call", sock, "sub"]) == ["subtract"]
    assert candidates(parser, ["call", "-v", sock, "config."]) == ["config.set", "config.get"]
    assert candidates(parser, ["call", sock, "subtract", ""]) == ["minuend=", "subtrahend="]
    assert candidates(parser, ["call", sock, "subtract", "minuend=1", ""]) == ["subtrahend="]
    assert "stats" in candidates(parser, ["watch", sock, ""])
    assert candidates(parser, ["methods", sock, "pi"]) == ["ping"]
    assert os.listdir(cache)  # cached for the next Tab
    assert sock in candidates(parser, ["call", os.path.dirname(sock) + "/"])  # files and dirs


def test_names_with_the_default_target(
    shared_demo: DemoProcess, cache: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JRPC_UNIX_SOCKET", shared_demo.path)
    assert candidates(build_parser(), ["call", "sub"]) == ["subtract"]
    assert candidates(build_parser(), ["call", "subtract", "minu"]) == ["minuend="]


def test_a_server_that_is_not_there_completes_nothing(sock_dir: str, cache: str) -> None:
    assert candidates(build_parser(), ["call", os.path.join(sock_dir, "no.sock"), ""]) == []


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_the_script(shell: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", shell]) == 0
    assert "jrpc-unix __complete " + shell in capsys.readouterr().out


def test_bash_completes_through_the_script(shared_demo: DemoProcess, sock_dir: str) -> None:
    """The real bash: source the script, call its function as bash's completion would."""
    line = f"jrpc-unix call {shared_demo.path} subtract minu"
    script = f"""
        source <(jrpc-unix completion bash)
        complete -p jrpc-unix
        COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}
        _jrpc_unix
        printf '%s\\n' "${{COMPREPLY[@]}}"
        COMP_LINE='jrpc-unix ca'; COMP_POINT=${{#COMP_LINE}}
        _jrpc_unix
        printf '%s\\n' "${{COMPREPLY[@]}}"
    """
    done = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=TIMEOUT, env=_shell_env(sock_dir)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["complete -o default -F _jrpc_unix jrpc-unix", "minuend=", "call"]


def _shell_env(cache: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{SCRIPT_DIR}:{os.environ['PATH']}", "XDG_CACHE_HOME": cache}
    env.pop("JRPC_UNIX_SOCKET", None)
    return env


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed (.ci/run installs it)")
def test_fish_completes_through_the_script(shared_demo: DemoProcess, sock_dir: str) -> None:
    """The real fish: ``complete -C LINE`` asks the script's function, as a Tab would."""
    script = (
        "jrpc-unix completion fish | source\n"
        f'complete -C "jrpc-unix call {shared_demo.path} subtract mi"\n'
        'complete -C "jrpc-unix ca"\n'
    )
    done = subprocess.run(
        ["fish", "-c", script], capture_output=True, text=True, timeout=TIMEOUT, env=_shell_env(sock_dir)
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines() == ["minuend=", "call"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (.ci/run installs it)")
def test_zsh_completes_through_the_script(shared_demo: DemoProcess, sock_dir: str) -> None:
    """The real zsh runs the script's function with ``words``/``CURRENT`` as its completion
    system sets them; ``compadd`` (a builtin only inside a completion widget) is stood in for
    by a function that prints what it was given."""
    script = f"""
        compdef() {{ : }}
        compadd() {{ printf '%s|' "$@"; echo }}
        eval "$(jrpc-unix completion zsh)"
        words=(jrpc-unix call {shared_demo.path} subtract mi); CURRENT=5; _jrpc_unix
        words=(jrpc-unix ca); CURRENT=2; _jrpc_unix
    """
    done = subprocess.run(
        ["zsh", "-f", "-c", script], capture_output=True, text=True, timeout=TIMEOUT, env=_shell_env(sock_dir)
    )
    assert (done.returncode, done.stderr) == (0, "")
    # a candidate ending in = gets no space after it (-S ''); a whole word does
    assert done.stdout.splitlines() == ["-Q|-S||--|minuend=|", "-Q|--|call|"]
