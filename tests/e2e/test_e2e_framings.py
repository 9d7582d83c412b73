"""Third-party clients in their default framing against the demo service, with no option set:
vscode-jsonrpc (LSP Content-Length headers; npm, pinned by tests/node/package-lock.json) and
bsonrpc (RFC 7464 json-seq, its default). Calls, notifications, errors; batches where the
library sends them (bsonrpc does, vscode-jsonrpc has none)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TIMEOUT, DemoProcess

NODE = shutil.which("node")
VSCODE_CLIENT = Path(__file__).parents[1] / "node" / "vscode_client.js"
VSCODE_INSTALLED = (VSCODE_CLIENT.parent / "node_modules" / "vscode-jsonrpc").is_dir()


@pytest.fixture(scope="module")
def vscode(shared_demo: DemoProcess) -> dict[str, Any]:
    if NODE is None or not VSCODE_INSTALLED:
        pytest.skip("node or vscode-jsonrpc is not installed (npm ci in tests/node)")
    proc = subprocess.run([NODE, str(VSCODE_CLIENT), shared_demo.path], capture_output=True, text=True,
                          timeout=TIMEOUT + 5, check=False)  # fmt: skip
    assert proc.returncode == 0, f"node failed:\n{proc.stderr}\n{shared_demo.log()}"
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_vscode_jsonrpc_calls(vscode: dict[str, Any]) -> None:
    assert (vscode["ping"], vscode["named"], vscode["positional"]) == ("pong", 19, 19)
    assert vscode["echo"] == "h\u00e9llo \u20ac\nline2 \U0001f600"


def test_vscode_jsonrpc_notification_runs(vscode: dict[str, Any]) -> None:
    assert vscode["after_notify"] == 7


def test_vscode_jsonrpc_errors(vscode: dict[str, Any]) -> None:
    assert vscode["unknown"] == {"code": -32601, "message": "Method not found", "data": "no.such.method"}
    assert vscode["fail"] == {"code": 1, "message": "oops"}
    assert vscode["bad_params"]["code"] == -32602


@pytest.fixture
def bsonrpc(shared_demo: DemoProcess) -> Iterator[Any]:
    from bsonrpc import JSONRpc  # type: ignore[import-untyped]

    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(TIMEOUT)
    sock.connect(shared_demo.path)
    rpc = JSONRpc(sock)  # its default framing: RFC 7464
    try:
        yield rpc
    finally:
        rpc.close()


def test_bsonrpc_json_seq_calls_and_notifications(bsonrpc: Any) -> None:
    peer = bsonrpc.get_peer_proxy(timeout=TIMEOUT)
    assert peer.ping() == "pong"
    assert peer.subtract(minuend=42, subtrahend=23) == 19
    assert peer.subtract(42, 23) == 19
    bsonrpc.invoke_notification("config.set", key="from-bsonrpc", value=[1, 2])
    assert bsonrpc.invoke_request("config.get", key="from-bsonrpc", timeout=TIMEOUT) == [1, 2]


def test_bsonrpc_json_seq_errors(bsonrpc: Any) -> None:
    with pytest.raises(Exception, match="Code: -32601 Message: Method not found"):
        bsonrpc.invoke_request("no.such", timeout=TIMEOUT)
    with pytest.raises(Exception, match="Code: 1 Message: oops"):
        bsonrpc.invoke_request("fail", message="oops", timeout=TIMEOUT)


def test_bsonrpc_json_seq_batch(bsonrpc: Any) -> None:
    batch = [("r", "subtract", (10, 3), {}), ("n", "counter.incr", (), {}), ("r", "no.such", (), {})]
    seven, missing = bsonrpc.batch_call(batch, timeout=TIMEOUT)
    assert seven == 7
    assert "Method not found" in str(missing)
