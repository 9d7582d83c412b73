"""The command line against a hostile server: nothing it sends may drive the terminal (issue 9, 16).

The server answers with escape sequences (clear the screen, retitle the window, a one-character
C1 CSI, a carriage return, DEL) in error messages, results, progress messages, method names and
summaries. The CLI runs as a real process on a real pseudo-terminal (``pty.openpty``); the only
control sequences allowed through are the progress bar's own (``\\r`` and ``ESC [ K``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import short_tmpdir
from helpers.ops import served
from helpers.terminal import on_terminal

from jrpc_unix import Client, Methods, Response, current_context
from jrpc_unix._cli.main import main

#: Clear the screen, set the window title (OSC ... BEL), C1 CSI "6n" (report the cursor: the
#: terminal would type an answer into the shell), a carriage return, DEL.
EVIL = "\x1b[2J\x1b]0;pwned\x07\x9b6n\r\x7f"
SHOWN = r"\x1b[2J\x1b]0;pwned\x07\x9b6n\r\x7f"  # how text output shows it
IN_JSON = r"\u001b[2J\u001b]0;pwned\u0007\u009b6n\r\u007f"  # how JSON output shows it
NAME = f"evil{EVIL}"


def hostile_methods() -> Methods:
    methods = Methods()

    @methods.add
    def fail_evil() -> Response:
        return Response.fail(f"bad {EVIL}", data={"why": EVIL})

    @methods.add
    def result_evil() -> Any:
        return {"text": EVIL}

    @methods.add
    def progress_evil() -> str:
        current_context().progress(1, 2, EVIL)
        return "done"

    def named() -> None:
        pass

    named.__doc__ = f"Summary {EVIL}"
    methods.add(NAME)(named)
    return methods


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    with short_tmpdir() as directory:
        path = os.path.join(directory, "s.sock")
        with served(path, hostile_methods()), Client(path) as client:
            client.call(NAME)  # so that `stats` lists it
            yield path


def on_a_terminal(*argv: str) -> tuple[int, bytes]:
    """``jrpc-unix ARGV`` with stdout and stderr on a pseudo-terminal: its exit code, its output."""
    code, shown, _ = on_terminal(*argv, stdout=True, stderr=True)
    return code, shown


def assert_inert(output: bytes) -> str:
    """No control character but newline, tab and the progress bar's own ``\\r``/``ESC [ K``."""
    text = output.decode()
    own = re.sub(r"\r(?=\[|\x1b\[K)|\x1b\[K", "", text)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", own), text
    return text


def test_an_error_message_and_its_data(hostile: str) -> None:
    code, output = on_a_terminal("call", hostile, "fail_evil")
    assert code == 1
    assert assert_inert(output) == f'error [1] bad {SHOWN}\n  data: {{"why":"{IN_JSON}"}}\n'


def test_a_result_as_json_and_raw(hostile: str) -> None:
    code, output = on_a_terminal("call", hostile, "result_evil")
    assert code == 0
    assert assert_inert(output) == f'{{\n  "text": "{IN_JSON}"\n}}\n'
    code, output = on_a_terminal("call", "--raw", hostile, "result_evil")
    assert code == 0
    line = assert_inert(output)
    assert json.loads(line)["result"] == {"text": EVIL}  # still the same JSON


def test_a_progress_message(hostile: str) -> None:
    code, output = on_a_terminal("call", hostile, "progress_evil")
    assert code == 0
    text = assert_inert(output)
    assert f"1/2  {SHOWN}\x1b[K" in text
    assert text.endswith('\r\x1b[K"done"\n')


def test_method_names_and_summaries(hostile: str) -> None:
    code, output = on_a_terminal("methods", hostile)
    assert code == 0
    text = assert_inert(output)
    assert f"\nevil{SHOWN}() -> null" in text
    assert f"  Summary {SHOWN[:-6]}" in text  # the server turns whitespace (CR) in a summary to a space
    code, output = on_a_terminal("methods", hostile, NAME)
    assert code == 0
    assert assert_inert(output).startswith(f"evil{SHOWN}() -> null\n\n  Summary {SHOWN[:-6]}")


def test_the_stats_table(hostile: str) -> None:
    code, output = on_a_terminal("stats", hostile)
    assert code == 0
    assert re.search(rf"^evil{re.escape(SHOWN)} +1 ", assert_inert(output), re.MULTILINE)


def test_json_into_a_pipe_is_the_same_json_without_raw_controls(
    hostile: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["call", hostile, "result_evil"]) == 0
    out = capsys.readouterr().out
    assert out == f'{{"text":"{IN_JSON}"}}\n'
    assert json.loads(out) == {"text": EVIL}
    assert main(["call", hostile, "--raw", "result_evil"]) == 0
    with Client(hostile) as client:  # --raw into a pipe: the server's bytes as they came
        assert capsys.readouterr().out.encode() == client.call_raw("result_evil")[1] + b"\n"
