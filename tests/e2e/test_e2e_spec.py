"""Every example of section 7 of the JSON-RPC 2.0 specification, as raw bytes over a real socket.

The server is the demo service (``examples/demo_server.py``) running as a subprocess, hosted by
trio and as an asyncio program's guest (``jrpc_unix.aio``, on asyncio's loop and uvloop). Answers are
compared as parsed JSON; ``data`` members are allowed where the spec shows none (it permits them);
code, message, id and result must be exactly the documented ones. "No answer" is proven without
sleeping: a ping follows on the same connection and must be the very next line, or (for the
batch of notifications) the socket is half-closed and must reach EOF with nothing read.
"""

from __future__ import annotations

import json

import pytest
from helpers import SPEC_EXAMPLES, DemoProcess, LineClient, assert_answer, assert_answers_unordered

ANSWERED = [(name, req, want) for name, req, want in SPEC_EXAMPLES if want is not None]
SILENT = [(name, req) for name, req, want in SPEC_EXAMPLES if want is None]
PING = b'{"jsonrpc":"2.0","method":"ping","id":"after"}\n'
PONG = {"jsonrpc": "2.0", "result": "pong", "id": "after"}

pytestmark = pytest.mark.parametrize("shared_demo", ["trio", "asyncio", "uvloop"], indirect=True)


@pytest.mark.parametrize(("name", "req", "want"), ANSWERED, ids=[e[0] for e in ANSWERED])
def test_spec_example_answer(shared_demo: DemoProcess, name: str, req: str, want: object) -> None:
    with LineClient(shared_demo.path) as c:
        c.send(req.encode() + b"\n")
        assert_answer(c.read_json(), want)
        # Exactly one answer: the next line belongs to the next request.
        c.send(PING)
        assert c.read_json() == PONG


@pytest.mark.parametrize(("name", "req"), SILENT, ids=[e[0] for e in SILENT])
def test_spec_example_no_answer_then_ping(shared_demo: DemoProcess, name: str, req: str) -> None:
    """A notification (or batch of them) gets no bytes: the ping's answer is the next line."""
    with LineClient(shared_demo.path) as c:
        c.send(req.encode() + b"\n" + PING)
        assert c.read_json() == PONG


@pytest.mark.parametrize(("name", "req"), SILENT, ids=[e[0] for e in SILENT])
def test_spec_example_no_answer_then_eof(shared_demo: DemoProcess, name: str, req: str) -> None:
    """Half-close after a notification: the server closes having written nothing at all."""
    with LineClient(shared_demo.path) as c:
        c.send(req.encode() + b"\n")
        c.shutdown_write()
        assert c.read_to_eof() == b""


def test_all_spec_examples_on_one_connection(shared_demo: DemoProcess) -> None:
    """All examples pipelined in one write, then half-close: exactly the documented answers."""
    wanted = [want for _, _, want in SPEC_EXAMPLES if want is not None]
    with LineClient(shared_demo.path) as c:
        c.send("".join(req + "\n" for _, req, _ in SPEC_EXAMPLES))
        c.shutdown_write()
        raw = c.read_to_eof()
    assert raw.endswith(b"\n")
    answers = [json.loads(line) for line in raw.split(b"\n")[:-1]]
    assert_answers_unordered(answers, wanted)


def test_spec_examples_without_final_newline(shared_demo: DemoProcess) -> None:
    """The last line before EOF without its newline is still a message."""
    _, req, want = ANSWERED[0]
    with LineClient(shared_demo.path) as c:
        c.send(req.encode())
        c.shutdown_write()
        raw = c.read_to_eof()
    assert raw.count(b"\n") == 1
    assert raw.endswith(b"\n")
    assert_answer(json.loads(raw), want)
