"""jrpc_unix._wire.requests: the request objects are jsonrpcclient's, written out (its import is
a third of a ``jrpc-unix call``: specs/performance.md), so these hold the two equal."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import jsonrpcclient
import pytest

from jrpc_unix._wire.conversation import Conversation
from jrpc_unix._wire.requests import Params, encode, notification_obj, request_obj

PARAMS: list[Params] = [
    None,
    [],
    {},
    [0],
    [None],
    [42, 23],
    [[], {}],
    {"key": "level"},
    {"key": "level", "value": {"nested": [1, 2.5, None, True]}},
    {"": 0},
    ["☃", "\ud800"],
]


def _theirs(params: Params) -> dict[str, Any] | tuple[Any, ...] | None:
    """jsonrpcclient's params form: positional params as a tuple."""
    return tuple(params) if isinstance(params, list) else params


@pytest.mark.parametrize("params", PARAMS, ids=repr)
@pytest.mark.parametrize("method", ["ping", "config.get", "rpc.subscribe", "", "☃"])
def test_request_objects_are_jsonrpcclients(method: str, params: Params) -> None:
    for rid in (1, 7, 2**40):
        ours = request_obj(method, params, rid)
        theirs = jsonrpcclient.request(method, _theirs(params), id=rid)
        assert ours == theirs
        assert list(ours) == list(theirs), "the same keys in the same order"
        assert encode(ours, "x") == encode(theirs, "x")
    ours, theirs = notification_obj(method, params), jsonrpcclient.notification(method, _theirs(params))
    assert list(ours) == list(theirs)  # (its positional params stay a tuple: the same JSON array)
    assert encode(ours, "x") == encode(theirs, "x")


@pytest.mark.parametrize("method", [None, 1, b"ping", ["ping"]])
def test_a_method_name_that_is_not_a_str_is_a_type_error(method: Any) -> None:
    name = type(method).__name__
    with pytest.raises(TypeError, match=f"^method name must be a str, not {name}$"):
        request_obj(method, None, 1)
    with pytest.raises(TypeError, match=f"^method name must be a str, not {name}$"):
        notification_obj(method, [1])
    with pytest.raises(TypeError, match=f"^method name must be a str, not {name}$"):
        Conversation().call(method)


def test_jsonrpcclient_is_imported_by_the_first_error_answer_only() -> None:
    """A conversation sends and reads results without it; an error answer is read by it."""
    error = '{"code": -32601, "message": "no"}'
    code = (
        "import sys\n"
        "from jrpc_unix._wire.conversation import Conversation\n"
        "conv = Conversation()\n"
        "exchange, data = conv.call('subtract', [42, 23])\n"
        'conv.receive_data(b\'{"jsonrpc": "2.0", "result": 19, "id": 1}\\n\')\n'
        "print(exchange.result(), 'jsonrpcclient' in sys.modules)\n"
        "exchange, data = conv.call('nosuch')\n"
        f'conv.receive_data(b\'{{"jsonrpc": "2.0", "error": {error}, "id": 2}}\\n\')\n'
        "print(repr(exchange.outcomes[2]), 'jsonrpcclient' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["19 False", "RpcError(code=-32601, message='no', data=None) True"]
