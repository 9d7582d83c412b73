"""The spec's examples through real shell tools: ``socat - UNIX-CONNECT:…`` and ``nc -U``.

stdin holds the requests, stdout collects the answers. socat half-closes the socket at stdin
EOF; the server must still answer everything it received (specs/protocol.md §5).
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from helpers import SPEC_EXAMPLES, TIMEOUT, DemoProcess, assert_answer, assert_answers_unordered

SOCAT = shutil.which("socat")
NC = shutil.which("nc")

pytestmark = [
    pytest.mark.skipif(SOCAT is None, reason="socat is not installed"),
    pytest.mark.parametrize("shared_demo", ["trio", "asyncio"], indirect=True),  # the demo's host
]


def socat(path: str, data: bytes, *options: str) -> bytes:
    assert SOCAT is not None
    proc = subprocess.run(
        [SOCAT, *options, "-", f"UNIX-CONNECT:{path}"],
        input=data,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def parse_lines(raw: bytes) -> list[object]:
    assert raw == b"" or raw.endswith(b"\n"), raw
    return [json.loads(line) for line in raw.split(b"\n")[:-1]]


@pytest.mark.parametrize(("name", "req", "want"), SPEC_EXAMPLES, ids=[e[0] for e in SPEC_EXAMPLES])
def test_spec_example_through_socat(shared_demo: DemoProcess, name: str, req: str, want: object) -> None:
    out = socat(shared_demo.path, req.encode() + b"\n")
    if want is None:
        assert out == b""  # no bytes at all
    else:
        (answer,) = parse_lines(out)
        assert_answer(answer, want)


def test_all_spec_examples_in_one_socat_session(shared_demo: DemoProcess) -> None:
    data = "".join(req + "\n" for _, req, _ in SPEC_EXAMPLES).encode()
    answers = parse_lines(socat(shared_demo.path, data))
    assert_answers_unordered(answers, [want for _, _, want in SPEC_EXAMPLES if want is not None])


def test_echo_one_liner_without_trailing_newline(shared_demo: DemoProcess) -> None:
    """``printf '…' | socat``: the last line has no newline and is still answered."""
    out = socat(shared_demo.path, b'{"jsonrpc":"2.0","method":"ping","id":1}')
    assert parse_lines(out) == [{"jsonrpc": "2.0", "result": "pong", "id": 1}]


def test_socat_slow_call_answered_after_stdin_eof(shared_demo: DemoProcess) -> None:
    """A call still running when socat half-closes is answered. (-t: socat's own wait for it.)"""
    data = (
        b'{"jsonrpc":"2.0","method":"sleep","params":[0.3],"id":"slow"}\n'
        b'{"jsonrpc":"2.0","method":"ping","id":2}\n'
    )
    answers = parse_lines(socat(shared_demo.path, data, "-t", str(TIMEOUT)))
    assert_answers_unordered(
        answers,
        [{"jsonrpc": "2.0", "result": 0.3, "id": "slow"}, {"jsonrpc": "2.0", "result": "pong", "id": 2}],
    )


def test_socat_notification_then_call_sees_its_effect(shared_demo: DemoProcess) -> None:
    """The recipe in specs/protocol.md §10: config.set as a notification, then config.get."""
    data = (
        b'{"jsonrpc":"2.0","method":"config.set","params":["socat_level","debug"]}\n'
        b'{"jsonrpc":"2.0","method":"config.get","params":["socat_level"],"id":3}\n'
    )
    assert parse_lines(socat(shared_demo.path, data)) == [{"jsonrpc": "2.0", "result": "debug", "id": 3}]


def test_socat_crlf_and_blank_lines(shared_demo: DemoProcess) -> None:
    data = b'\r\n\n{"jsonrpc":"2.0","method":"ping","id":1}\r\n   \n{"jsonrpc":"2.0","method":"ping","id":2}'
    data += b"\r\n"
    answers = parse_lines(socat(shared_demo.path, data))
    assert sorted(a["id"] for a in answers) == [1, 2]  # type: ignore[index]


def test_socat_many_requests(shared_demo: DemoProcess) -> None:
    template = b'{"jsonrpc":"2.0","method":"echo","params":[%d],"id":%d}\n'
    data = b"".join(template % (i, i) for i in range(500))
    answers = parse_lines(socat(shared_demo.path, data))
    assert sorted((a["id"], a["result"]) for a in answers) == [(i, i) for i in range(500)]  # type: ignore[index]


@pytest.mark.skipif(NC is None, reason="nc is not installed")
def test_all_spec_examples_through_nc(shared_demo: DemoProcess) -> None:
    """OpenBSD netcat: -N shuts the write side at stdin EOF, like socat."""
    assert NC is not None
    data = "".join(req + "\n" for _, req, _ in SPEC_EXAMPLES).encode()
    proc = subprocess.run(
        [NC, "-N", "-U", shared_demo.path], input=data, capture_output=True, timeout=TIMEOUT, check=False
    )
    assert proc.returncode == 0, proc.stderr
    answers = parse_lines(proc.stdout)
    assert_answers_unordered(answers, [want for _, _, want in SPEC_EXAMPLES if want is not None])


@pytest.mark.skipif(NC is None, reason="nc is not installed")
@pytest.mark.parametrize(("name", "req", "want"), SPEC_EXAMPLES, ids=[e[0] for e in SPEC_EXAMPLES])
def test_spec_example_through_nc(shared_demo: DemoProcess, name: str, req: str, want: object) -> None:
    assert NC is not None
    proc = subprocess.run(
        [NC, "-N", "-U", shared_demo.path],
        input=req.encode() + b"\n",
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    if want is None:
        assert proc.stdout == b""
    else:
        (answer,) = parse_lines(proc.stdout)
        assert_answer(answer, want)
