"""serve_in_thread (jrpc_unix._server.thread): a server in a background thread, for programs that
are not trio programs; started, stopped (idempotent, from anywhere), no thread left behind."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from helpers import (
    LineClient,
    lines,
    request,
)
from helpers.server import sample_methods

from jrpc_unix import (
    Limits,
    ServerSetupError,
    serve_in_thread,
)


def _threads() -> set[threading.Thread]:
    """Live threads, less trio's worker-thread cache (idle workers linger by design)."""
    return {t for t in threading.enumerate() if not t.name.startswith("Trio thread")}


def test_serve_in_thread_start_stop_idempotent_no_leaked_threads(sock_path: str) -> None:
    before = _threads()
    handle = serve_in_thread(sock_path, sample_methods(), limits=Limits(shutdown_grace=2.0))
    assert handle.running
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    with LineClient(sock_path) as c:
        assert c.call("ping") == {"jsonrpc": "2.0", "result": "pong", "id": 1}
        assert c.call("nap", [0.01], rid=2)["result"] == 0.01
    handle.stop()
    handle.stop()  # idempotent
    assert not handle.running
    assert not os.path.exists(sock_path)
    assert _threads() == before


def test_serve_in_thread_as_context_manager(sock_path: str) -> None:
    before = _threads()
    with (
        serve_in_thread(sock_path, sample_methods(), limits=Limits(shutdown_grace=2.0)) as handle,
        LineClient(sock_path) as c,
    ):
        assert c.call("ping")["result"] == "pong"
    assert not handle.running
    assert _threads() == before


def test_serve_in_thread_reports_why_it_cannot_start(sock_path: str) -> None:
    before = _threads()
    Path(sock_path).write_text("not a socket")
    with pytest.raises(ServerSetupError, match="not a socket"):
        serve_in_thread(sock_path, sample_methods())
    assert _threads() == before


def test_serve_in_thread_stop_with_a_call_in_flight(sock_path: str) -> None:
    handle = serve_in_thread(sock_path, sample_methods(), limits=Limits(shutdown_grace=2.0))
    with LineClient(sock_path) as c:
        c.send(lines(request("nap", [0.3], "slow"), request("ping", rid="p")))
        assert c.read_json()["id"] == "p"
        handle.stop()  # waits for the call to finish
        assert c.read_json() == {"jsonrpc": "2.0", "result": 0.3, "id": "slow"}
    assert not handle.running
