"""Fixtures shared by the test suite: short socket paths and the demo service as a process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DemoProcess, demo_server, short_tmpdir
from helpers.sshd import Sshd, start_sshd
from helpers.sshd import available as sshd_unavailable


@pytest.fixture
def sock_dir() -> Iterator[str]:
    """A fresh short directory in /tmp (pytest's tmp_path can exceed sun_path's 108 bytes)."""
    with short_tmpdir() as d:
        yield d


@pytest.fixture
def sock_path(sock_dir: str) -> str:
    return os.path.join(sock_dir, "s.sock")


@pytest.fixture(scope="module")
def shared_demo(request: pytest.FixtureRequest) -> Iterator[DemoProcess]:
    """One demo service per test module, for tests that do not depend on its state.

    Its host is trio, unless a module parametrizes it (``indirect=True``) with "asyncio" or
    "uvloop": the same service as an asyncio program's guest (``jrpc_unix.aio``)."""
    with demo_server(getattr(request, "param", "trio")) as demo:
        yield demo


@pytest.fixture
def demo() -> Iterator[DemoProcess]:
    """A fresh demo service for one test."""
    with demo_server() as d:
        yield d


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1 for the session (helpers.sshd); skipped where it cannot run."""
    why = sshd_unavailable()
    if why is not None:
        pytest.skip(why)
    with short_tmpdir() as d:
        server = start_sshd(Path(d))
        try:
            yield server
        finally:
            server.stop()
