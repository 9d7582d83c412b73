"""``jrpc-unix shell`` (issue 15): lines in, pretty results out, events as they arrive."""

from __future__ import annotations

import contextlib
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator

from helpers import TIMEOUT, DemoProcess
from helpers.terminal import CLI

from jrpc_unix import Client
from jrpc_unix._cli.shell import Session


def test_lines_from_a_pipe(shared_demo: DemoProcess) -> None:
    script = "ping\nsubtract 5 3\n# a comment\nsubstract 1\n.bogus\nsubtract minuend=9 subtrahend=2\n"
    done = subprocess.run(
        [*CLI, "shell", shared_demo.path], input=script, capture_output=True, text=True, timeout=TIMEOUT
    )
    assert done.returncode == 0
    assert done.stdout == '"pong"\n2\n7\n'
    assert done.stderr == (
        "error [-32601] Method not found\n"
        "  did you mean: subtract?\n"
        "jrpc-unix: unknown command .bogus (.help lists them)\n"
    )


def test_watch_prints_events_as_they_arrive(demo: DemoProcess) -> None:
    proc = subprocess.Popen(
        [*CLI, "shell", demo.path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdin.write(".watch stats interval=0.05\n")
        proc.stdin.flush()
        assert proc.stderr.readline() == "watching stats (.unwatch stats to stop)\n"
        first = proc.stdout.readline()  # the shell is idle, waiting for a line: the event comes anyway
        assert first.startswith('[stats] {"server":'), first
        out, err = proc.communicate(".unwatch stats\nping\n.quit\n", timeout=TIMEOUT)
        assert proc.returncode == 0, err
        assert out.endswith('"pong"\n')
    finally:
        proc.kill()
        proc.wait()


def test_completion_of_names_and_params(shared_demo: DemoProcess) -> None:
    with Client(shared_demo.path) as client:
        session = Session(client, None, interactive=False)
        session.load_names()
    assert session.complete("sub", "sub") == ["subtract"]
    assert session.complete(".w", ".w") == [".watch"]
    assert session.complete("subtract ", "") == ["minuend=", "subtrahend="]
    assert session.complete("subtract minuend=1 s", "s") == ["subtrahend="]


def _read_until(fd: int, marker: bytes, seen: bytearray) -> None:
    """Read the terminal until ``marker`` has appeared in what it showed (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while marker not in seen:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        assert ready, f"{marker!r} never appeared in {bytes(seen)!r}"
        seen += os.read(fd, 4096)


def _drain(fd: int) -> None:
    """Read the terminal until every process on its other side has closed it (bounded)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        try:
            if not ready or not os.read(fd, 65536):
                return
        except OSError:  # EIO: the other side is closed
            return


@contextlib.contextmanager
def _on_terminal(sock: str, state: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The shell on a pseudo-terminal: (its process, our side of the terminal); killed after."""
    primary, secondary = pty.openpty()
    env = {**os.environ, "XDG_STATE_HOME": state, "TERM": "dumb"}
    proc = subprocess.Popen(
        [*CLI, "shell", sock],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        start_new_session=True,
    )
    os.close(secondary)
    try:
        yield proc, primary
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_interactive_on_a_terminal(shared_demo: DemoProcess, sock_dir: str) -> None:
    """On a real pseudo-terminal: the prompt, Tab completion, a result, events, history."""
    seen = bytearray()
    with _on_terminal(shared_demo.path, sock_dir) as (proc, primary):
        _read_until(primary, b"jrpc> ", seen)
        os.write(primary, b"subtr\t")
        _read_until(primary, b"jrpc> subtract", seen)  # completed from rpc.discover
        os.write(primary, b" minuend=5 subtrahend=3\r")
        _read_until(primary, b"\r\n2\r\n", seen)
        os.write(primary, b".watch stats interval=0.05\r")
        _read_until(primary, b'[stats] {"server":', seen)
        os.write(primary, b".quit\r")  # a whole line: read whenever readline next asks
        _drain(primary)  # events keep coming until it has left: a terminal shows them all
        assert proc.wait(TIMEOUT) == 0
    with open(os.path.join(sock_dir, "jrpc-unix", "history")) as f:
        assert any(" ".join(line.split()) == "subtract minuend=5 subtrahend=3" for line in f)


def test_ctrl_d_leaves(shared_demo: DemoProcess, sock_dir: str) -> None:
    with _on_terminal(shared_demo.path, sock_dir) as (proc, primary):
        _read_until(primary, b"jrpc> ", bytearray())  # readline has the terminal: ^D is its EOF
        os.write(primary, b"\x04")
        _drain(primary)
        assert proc.wait(TIMEOUT) == 0
