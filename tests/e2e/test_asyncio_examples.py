"""The asyncio examples run as their users would run them: ``examples/asyncio_service.py`` (an
asyncio HTTP service with a control socket) and ``examples/asyncio_client.py`` steering it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from helpers import ROOT, TIMEOUT, ServerProcess, wait_for

SERVICE = ROOT / "examples" / "asyncio_service.py"
CLIENT = ROOT / "examples" / "asyncio_client.py"


def test_the_asyncio_service_is_steered_and_watched_by_the_asyncio_client(sock_dir: str) -> None:
    path, log = os.path.join(sock_dir, "app.sock"), os.path.join(sock_dir, "app.log")
    said = f"listening on {path}".encode()
    with ServerProcess(
        [sys.executable, str(SERVICE), path], log, lambda: said in Path(log).read_bytes()
    ) as app:
        port = int(re.findall(r"serving HTTP on port (\d+)", app.log())[0])
        out_path = os.path.join(sock_dir, "client.out")
        with open(out_path, "wb") as out:
            client = subprocess.Popen(
                [sys.executable, str(CLIENT), path, "2"], stdout=out, stderr=out, cwd=ROOT
            )
            try:
                wait_for(lambda: b"watching" in Path(out_path).read_bytes(), "the client to subscribe")
                for where in ("/a", "/b"):
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}{where}", timeout=TIMEOUT) as page:
                        assert page.read() == f"hi from {where}\n".encode()  # the greeting it set
                assert client.wait(TIMEOUT) == 0
            finally:
                client.kill()
                client.wait(TIMEOUT)
        lines = Path(out_path).read_text().splitlines()
        assert lines == [
            "counters: {'served': 0, 'in_flight': 0, 'by_path': {}}",
            "settings: {'greeting': 'hi', 'delay': 0.0}",
            "drained; served so far: 0",
            "watching",
            "request: {'path': '/a', 'served': 1}",
            "request: {'path': '/b', 'served': 2}",
        ]
        assert app.signal() == 0  # SIGTERM: a graceful stop
    assert not os.path.exists(path)
