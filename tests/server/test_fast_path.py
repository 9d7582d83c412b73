"""The inline fast path (``Calls._fast``) against the general path it mirrors, over the socket.

The same generated requests go to a server with ``fast_path=True`` and one with
``fast_path=False``: the answers and the ``rpc.stats`` counts must be the same.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing
from helpers import (
    serving,
    short_tmpdir,
)
from helpers.server import connected
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jrpc_unix import (
    Methods,
    Response,
    Server,
)


def differential_methods() -> Methods:
    methods = Methods()

    @methods.add
    def ping() -> str:
        return "pong"

    @methods.add
    def echo(x: Any) -> Any:
        return x

    @methods.add
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    @methods.add("sum")
    def sum_(*numbers: int) -> int:
        return sum(numbers)

    @methods.add
    def kw(a: int, /, b: int = 2, *, c: int = 3) -> list[int]:
        return [a, b, c]

    @methods.add
    def fail(message: str) -> Response:
        return Response.fail(message, code=7, data={"m": message})

    @methods.add
    def crash() -> None:
        raise RuntimeError("crash")

    @methods.add
    def nan() -> float:
        return float("nan")

    @methods.add
    async def async_echo(x: Any = None) -> Any:
        await trio.lowlevel.checkpoint()
        return x

    return methods


big_ints = st.integers(-(2**70), 2**70)


json_leaf = st.none() | st.booleans() | big_ints | st.floats(allow_nan=False) | st.text(max_size=3)


ids = big_ints | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3) | st.none()


METHOD_NAMES = [*differential_methods(), "nope", "rpc.x"]


PARAM_NAMES = ["x", "a", "b", "c", "minuend", "subtrahend", "message", "z"]


@st.composite
def wire_requests(draw: st.DrawFn) -> Any:
    obj: dict[str, Any] = {"jsonrpc": draw(st.sampled_from(["2.0", "2.0", "2.0", "1.0"]))}
    obj["method"] = draw(st.sampled_from(METHOD_NAMES))
    small = st.integers(-5, 5) | st.text(max_size=2)
    params = draw(
        st.none()
        | st.lists(small, max_size=4)
        | st.dictionaries(st.sampled_from(PARAM_NAMES), small, max_size=3)
        | json_leaf
    )
    if params is not None:
        obj["params"] = params
    if draw(st.integers(0, 3)):
        obj["id"] = draw(ids | st.booleans())
    if not draw(st.integers(0, 10)):
        obj["extra"] = 1
    return obj


message_lists = st.lists(wire_requests() | st.lists(wire_requests(), max_size=4), min_size=1, max_size=12)


def normalized(raw: bytes) -> list[str]:
    """Answers as sorted canonical JSON, with the random error_id of -32603 masked."""

    def mask(answer: Any) -> Any:
        if isinstance(answer, list):
            return sorted((mask(a) for a in answer), key=json.dumps)
        err = answer.get("error")
        if isinstance(err, dict) and isinstance(err.get("data"), dict) and "error_id" in err["data"]:
            err["data"]["error_id"] = "*"
        return answer

    return sorted(json.dumps(mask(json.loads(line)), sort_keys=True) for line in raw.splitlines())


async def exchange(path: str, payload: bytes) -> bytes:
    async with connected(path) as c:
        await c.send(payload)
        await c.send_eof()
        return await c.read_to_eof()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=message_lists)
async def test_fast_path_and_general_path_answer_alike_over_the_socket(messages: list[Any]) -> None:
    payload = b"".join(json.dumps(m).encode() + b"\n" for m in messages)
    with short_tmpdir() as d:
        fast_path, slow_path = os.path.join(d, "fast.sock"), os.path.join(d, "slow.sock")
        async with (
            serving(fast_path, differential_methods(), fast_path=True) as fast_server,
            serving(slow_path, differential_methods(), fast_path=False) as slow_server,
        ):
            fast = await exchange(fast_path, payload)
            slow = await exchange(slow_path, payload)
            assert counts(fast_server) == counts(slow_server)  # the fast path counts alike too
    assert normalized(fast) == normalized(slow)


def counts(server: Server) -> dict[str, Any]:
    """The request counts in ``rpc.stats`` (latency figures reduced to how many were recorded)."""
    snapshot = server.stats.snapshot()
    figures = {k: v for k, v in snapshot["server"].items() if k not in ("uptime_s", "connections")}
    for name, m in snapshot["methods"].items():
        figures[name] = (m["calls"], m["notifications"], m["errors"], m["latency_us"]["count"])
    return figures


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("method", ["echo", "async_echo"])
@pytest.mark.parametrize(
    "raw_id",
    [
        b"0",
        b"-1",
        b"18446744073709551616",
        b"-9223372036854775809",
        b"123456789012345678901234567890",
        b"1.5",
        b"1e300",
        b'"x"',
        b'""',
        b'"\\u00e9"',
        b"null",
    ],
)
async def test_exact_id_echo_over_the_socket(
    sock_path: str, fast_path: bool, method: str, raw_id: bytes
) -> None:
    line = b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":[1],"id":' + raw_id + b"}\n"
    async with serving(sock_path, differential_methods(), fast_path=fast_path), connected(sock_path) as c:
        await c.send(line)
        answer = json.loads(await c.readline())
    want = json.loads(raw_id)
    assert answer == {"jsonrpc": "2.0", "result": 1, "id": want}
    assert type(answer["id"]) is type(want)
