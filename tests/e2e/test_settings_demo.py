"""The demo's typed settings as a real process (issue 12): persistence across a restart, a SIGKILL
in the middle of writing the file, secrets and the ``settings`` topic seen from below admin (a
client run as ``nobody``), type errors of every demo method with hints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from helpers import DEMO, TIMEOUT, LineClient, ServerProcess, demo_module, short_tmpdir
from helpers.ops import served


def demo(d: str, *extra: str) -> ServerProcess:
    path, log = os.path.join(d, "demo.sock"), os.path.join(d, "demo.log")
    said = f"listening on {path}".encode()
    return ServerProcess(
        [sys.executable, str(DEMO), path, *extra], log, lambda: said in Path(log).read_bytes()
    )


def test_persisted_values_survive_a_restart_and_others_do_not() -> None:
    with short_tmpdir() as d:
        file = os.path.join(d, "settings.json")
        with demo(d, "--settings-file", file) as server, LineClient(os.path.join(d, "demo.sock")) as c:
            kept = c.call("settings.set", {"values": {"workers": 9, "greeting": "hi"}, "persist": True})
            assert kept["result"]["persisted"] is True
            assert c.call("settings.set", {"values": {"rate_limit": 2.5}})["result"]["persisted"] is False
            assert (
                c.call("settings.set", {"values": {"listen_backlog": 64}, "persist": True})["result"][
                    "applied"
                ]
                is False
            )
            # only what persist=true changes named; rate_limit was changed without it
            assert json.loads(Path(file).read_text()) == {
                "greeting": "hi",
                "listen_backlog": 64,
                "workers": 9,
            }
            assert server.signal() == 0
        with demo(d, "--settings-file", file), LineClient(os.path.join(d, "demo.sock")) as c:
            values = c.call("settings.get")["result"]
            assert (values["workers"], values["greeting"], values["rate_limit"]) == (9, "hi", 0.0)
            assert values["listen_backlog"] == 64  # the pending value took effect at the start
            diff = {e["name"]: e for e in c.call("settings.diff")["result"]}
            assert diff["workers"]["source"] == "file"
            assert diff["workers"]["persisted"] == 9


def test_an_invalid_file_value_is_skipped_and_shown_never_fatal() -> None:
    with short_tmpdir() as d:
        file = Path(d, "settings.json")
        file.write_text(json.dumps({"workers": 1000, "log_level": "loud", "greeting": "yo"}))
        with demo(d, "--settings-file", str(file)) as server, LineClient(os.path.join(d, "demo.sock")) as c:
            assert c.call("settings.get", {"names": ["workers", "greeting"]})["result"] == {
                "workers": 4,
                "greeting": "yo",
            }
            diff = {e["name"]: e for e in c.call("settings.diff")["result"]}
            assert diff["workers"]["file_error"] == "must be <= 64, got 1000"
            assert diff["log_level"]["file_error"].startswith("expected one of 'debug'")
            assert "workers skipped: must be <= 64, got 1000" in server.log()


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from jrpc_unix._service.settings_file import write_values
    path, n = Path(sys.argv[1]), 0
    while True:
        n += 1
        write_values(path, {"workers": n % 2 + 1, "greeting": "x" * (4096 * (n % 2))})
        print(n, flush=True)
    """
)


def test_a_sigkill_during_writes_leaves_the_old_file_or_the_new_never_a_torn_one() -> None:
    with short_tmpdir() as d:
        file = Path(d, "settings.json")
        for _ in range(5):
            proc = subprocess.Popen([sys.executable, "-c", WRITER, str(file)], stdout=subprocess.PIPE)
            try:
                assert proc.stdout is not None
                for _ in range(20):  # let it write for a while, then kill it wherever it is
                    assert proc.stdout.readline()
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=TIMEOUT)
                assert proc.stdout is not None
                proc.stdout.close()
            values = json.loads(file.read_text())
            assert values in ({"workers": 2, "greeting": "x" * 4096}, {"workers": 1, "greeting": ""})


@pytest.mark.parametrize(
    ("method", "params", "data"),
    [
        ("subtract", ["42", 23], "minuend: expected a number, got string"),
        ("subtract", {"minuend": 1, "subtrahend": True}, "subtrahend: expected a number, got boolean"),
        ("sum", [1, "2"], "numbers[1]: expected a number, got string"),
        ("sleep", ["1"], "seconds: expected a number, got string"),
        ("config.set", [1, "v"], "key: expected a string, got integer"),
        ("config.get", {"key": None}, "key: expected a string, got null"),
        ("work", [1.5], "steps: expected an integer, got number"),
        ("work", {"steps": 1, "delay": "x"}, "delay: expected a number, got string"),
        ("fail", [[]], "message: expected a string, got array"),
        ("settings.get", [["workers", 1]], "names: [1]: expected a string, got integer"),
        (
            "settings.set",
            {"values": {"workers": 1}, "dry_run": "yes"},
            "dry_run: expected a boolean, got string",
        ),
        ("settings.log", ["10"], "limit: expected an integer, got string"),
        ("settings.revert", ["1"], "version: expected an integer, got string"),
    ],
)
def test_type_errors_of_demo_methods_are_invalid_params(
    method: str, params: Any, data: str, sock_path: str
) -> None:
    with served(sock_path, demo_module().methods), LineClient(sock_path) as c:
        answer = c.call(method, params, rid=7)
        assert answer["error"] == {"code": -32602, "message": "Invalid params", "data": data}
