"""A client in another language: plain Node.js ``net`` (tests/clients/node_client.js), no npm.

It makes calls (positional, named, unicode, errors), sends a notification and checks its effect,
keeps two calls in flight at once, sends a batch, and half-closes with a call still pending.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers import TIMEOUT, DemoProcess, assert_answer

NODE = shutil.which("node")
CLIENT = Path(__file__).parent / "clients" / "node_client.js"

pytestmark = pytest.mark.skipif(NODE is None, reason="node is not installed")


@pytest.fixture(scope="module")
def node_output(shared_demo: DemoProcess) -> dict[str, Any]:
    """One run of the Node client against a fresh demo service; each test checks one part."""
    assert NODE is not None
    argv = [NODE, str(CLIENT), shared_demo.path]
    proc = subprocess.run(argv, capture_output=True, timeout=TIMEOUT + 5, check=False, text=True)
    assert proc.returncode == 0, f"node failed ({proc.returncode}):\n{proc.stderr}\n{shared_demo.log()}"
    out: dict[str, Any] = json.loads(proc.stdout)
    return out


def test_node_calls(node_output: dict[str, Any]) -> None:
    assert node_output["ping"] == {"jsonrpc": "2.0", "result": "pong", "id": 1}
    assert node_output["positional"] == {"jsonrpc": "2.0", "result": 19, "id": 2}
    assert node_output["named"] == {"jsonrpc": "2.0", "result": 19, "id": 3}
    text = "h\u00e9llo \u20ac\nline2 \U0001f600"
    assert node_output["echo"] == {"jsonrpc": "2.0", "result": text, "id": "echo-id"}


def test_node_errors(node_output: dict[str, Any]) -> None:
    assert_answer(
        node_output["unknown"],
        {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "u"},
    )
    assert node_output["fail"] == {"jsonrpc": "2.0", "error": {"code": 1, "message": "oops"}, "id": 4}


def test_node_notification_applies_before_the_next_call(node_output: dict[str, Any]) -> None:
    assert node_output["after_notify"] == {"jsonrpc": "2.0", "result": "from-node", "id": 5}
    assert node_output["unmatched"] == []  # the notification got no answer


def test_node_concurrent_calls_answer_out_of_order(node_output: dict[str, Any]) -> None:
    """No race of timers: the slow call (30 s) ends only when cancelled, once the fast answer came."""
    slow, fast = node_output["concurrent"]
    cancelled = {"code": -32005, "message": "Cancelled", "data": "sleep was cancelled"}
    assert slow == {"jsonrpc": "2.0", "error": cancelled, "id": "slow"}
    assert fast == {"jsonrpc": "2.0", "result": "fast", "id": "fast"}
    arrivals = node_output["arrivals"]
    assert arrivals.index("fast") < arrivals.index("slow")  # sent second, answered first


def test_node_batch(node_output: dict[str, Any]) -> None:
    assert_answer(
        node_output["batch"],
        [
            {"jsonrpc": "2.0", "result": 1, "id": "b1"},
            {"jsonrpc": "2.0", "result": -1, "id": "b2"},
            {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": None},
            {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": "b3"},
        ],
    )


def test_node_half_close_with_a_pending_call(node_output: dict[str, Any]) -> None:
    assert node_output["at_close"] == {"jsonrpc": "2.0", "result": 0.1, "id": "at-close"}
