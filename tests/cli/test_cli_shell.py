"""``jrpc-unix shell`` (issue 15): lines in, pretty results out, events as they arrive."""

from __future__ import annotations

import subprocess

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
