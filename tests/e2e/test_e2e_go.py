"""A real Go program speaking the Go original's wire (tests/e2e/clients/unixsock.go, standard
library only) against the demo service with no option set: calls, failures, unknown commands,
bad args, a crash, respond=false running its command, close=false keeping the connection.

Go comes from Debian's ``golang-go`` (installed by .ci/run); without ``go`` locally, skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TIMEOUT, DemoProcess, short_tmpdir

from jrpc_unix import Client, ProtocolError, RpcError, open_client
from jrpc_unix.aio import open_client as aio_open_client

GO = shutil.which("go")
SOURCE = Path(__file__).parent / "clients" / "unixsock.go"
CLI = [sys.executable, "-m", "jrpc_unix"]

pytestmark = pytest.mark.skipif(GO is None, reason="go is not installed")


@pytest.fixture(scope="session")
def go_unixsock() -> Iterator[str]:
    """The Go program, built once (no module download: a single stdlib-only file)."""
    assert GO is not None
    with short_tmpdir() as d:
        env = {
            **os.environ,
            "GOCACHE": f"{d}/cache",
            "GOPATH": f"{d}/gopath",
            "GO111MODULE": "off",
            "GOFLAGS": "",
        }
        binary = f"{d}/unixsock"
        argv = [GO, "build", "-o", binary, str(SOURCE)]
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr
        yield binary


@pytest.fixture(scope="module")
def go_steps(go_unixsock: str, shared_demo: DemoProcess) -> dict[str, Any]:
    proc = subprocess.run([go_unixsock, "client", shared_demo.path], capture_output=True, text=True,
                          timeout=TIMEOUT + 5, check=False)  # fmt: skip
    assert proc.returncode == 0, f"go client failed:\n{proc.stderr}\n{shared_demo.log()}"
    steps = [json.loads(line) for line in proc.stdout.splitlines()]
    assert all("error" not in s for s in steps), steps  # no Send failed
    return {s["step"]: s["response"] for s in steps}


def success(payload: str) -> dict[str, str]:
    return {"status": "success", "error": "", "payload": payload}


def failure(error: str) -> dict[str, str]:
    return {"status": "failure", "error": error, "payload": ""}


def test_go_calls(go_steps: dict[str, Any]) -> None:
    assert go_steps["ping"] == success("pong")
    assert go_steps["echo"] == success('{"html":"\\u003ca\\u0026b\\u003e","n":1}')  # as Go marshals it
    assert go_steps["subtract"] == success("19")


def test_go_errors(go_steps: dict[str, Any]) -> None:
    assert go_steps["fail"] == failure("boom")
    assert go_steps["unknown"] == failure("Method not found: no.such.command")
    assert go_steps["bad_args"] == failure("Invalid params: missing a required argument: 'subtrahend'")
    crash = go_steps["crash"]
    assert crash["status"] == "failure"
    assert crash["error"].startswith("Internal error")
    assert "Traceback" not in crash["error"]
    assert "crash() was called" not in crash["error"]


def test_go_respond_false_runs_and_close_false_keeps_the_connection(go_steps: dict[str, Any]) -> None:
    assert go_steps["set_silently"] is None  # nothing was sent back...
    assert go_steps["keepalive_get"] == success("yes")  # ...and yet it ran
    assert go_steps["keepalive_incr"] == success("1")  # same connection, next frame
    assert go_steps["keepalive_last"] == success("pong")


# -- our clients against a Go server (a fleet migrates in either order) -----------------------


@pytest.fixture(scope="module")
def go_server(go_unixsock: str) -> Iterator[str]:
    with short_tmpdir() as d:
        path = f"{d}/go.sock"
        proc = subprocess.Popen([go_unixsock, "server", path], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "listening\n"
            yield path
        finally:
            proc.kill()
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()


def test_blocking_client_speaks_unixsock_to_a_go_server(go_server: str) -> None:
    with Client(go_server, timeout=TIMEOUT, framing="unixsock") as client:
        assert client.call("ping") == "pong"
        assert client.call("echo", n=1, html="<a&b>") == '{"html":"\\u003ca\\u0026b\\u003e","n":1}'
        client.notify("ping")  # respond=false: nothing comes back, the connection stays in step
        with pytest.raises(RpcError) as failed:
            client.call("fail", message="boom")
        assert (failed.value.code, failed.value.message) == (1, "boom")
        with pytest.raises(RpcError, match="handler: unknown command 'nope'"):
            client.call("nope")
        assert client.call("ping") == "pong"  # all of it on one connection (close=false)
        with pytest.raises(ProtocolError, match="named params only"):
            client.call("echo", 1, 2)


async def test_trio_client_speaks_unixsock_to_a_go_server(go_server: str) -> None:
    async with open_client(go_server, framing="unixsock") as client:
        assert await client.call("ping") == "pong"
        with pytest.raises(RpcError, match="boom"):
            await client.call("fail", message="boom")
        assert await client.call("echo", k="v") == '{"k":"v"}'


def test_asyncio_client_speaks_unixsock_to_a_go_server(go_server: str) -> None:
    async def main() -> None:
        async with asyncio.timeout(TIMEOUT), aio_open_client(go_server, framing="unixsock") as client:
            assert await client.call("ping") == "pong"
            with pytest.raises(RpcError, match="boom"):
                await client.call("fail", message="boom")
            assert await client.call("echo", k="v") == '{"k":"v"}'

    asyncio.run(main())


def test_cli_call_framing_unixsock(go_server: str) -> None:
    ok = subprocess.run([*CLI, "call", "--framing", "unixsock", go_server, "echo", "k=v"],
                        capture_output=True, text=True, timeout=TIMEOUT, check=False)  # fmt: skip
    assert (ok.returncode, ok.stdout) == (0, '{"k":"v"}\n'), ok.stderr
    failed = subprocess.run([*CLI, "call", "--framing", "unixsock", go_server, "fail", "message=it broke"],
                            capture_output=True, text=True, timeout=TIMEOUT, check=False)  # fmt: skip
    assert failed.returncode == 1
    assert "it broke" in failed.stderr
