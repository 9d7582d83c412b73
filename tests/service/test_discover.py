"""rpc.discover: the OpenRPC document built from the registered methods, and its switch."""

from __future__ import annotations

import enum
import os
from typing import Any, Literal, Optional, TypedDict, Union

import pytest

from jrpc_unix import Access, Client, ErrorCode, Methods, Response, RpcError, serve_in_thread
from jrpc_unix._service.discover import add_discover, openrpc_document, schema_of


class Colour(enum.Enum):
    RED = "red"
    GREEN = "green"


class Point(TypedDict):
    x: int
    y: int


@pytest.mark.parametrize(
    ("annotation", "schema"),
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (None, {"type": "null"}),
        (Any, {}),
        (object, {}),
        (Response, {}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (list, {"type": "array"}),
        (tuple[int, ...], {"type": "array", "items": {"type": "integer"}}),
        (
            tuple[int, str],
            {"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False},
        ),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (dict, {"type": "object"}),
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Optional[str], {"anyOf": [{"type": "string"}, {"type": "null"}]}),  # noqa: UP045
        (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),  # noqa: UP007
        (Literal["a", 1], {"enum": ["a", 1]}),
        (Colour, {"enum": ["red", "green"]}),
        (
            Point,
            {
                "type": "object",
                "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                "required": ["x", "y"],
            },
        ),
        ("NotResolvable", {"x-python-type": "NotResolvable"}),
        (bytes, {"x-python-type": "bytes"}),
    ],
)
def test_schema_of(annotation: Any, schema: dict[str, Any]) -> None:
    assert schema_of(annotation) == schema


def sample_methods() -> Methods:
    methods = Methods()

    @methods.add
    def plain(name: str, count: int = 3, *, loud: bool = False) -> list[str]:
        """Repeat a name.

        Longer text that explains
        the details.
        """
        return [name] * count

    @methods.add("by.position")
    def by_position(a: float, b: float = 1.5, /) -> float:
        return a + b

    @methods.add
    def variadic(*numbers: float) -> float:
        """The sum."""
        return sum(numbers)

    @methods.add
    def anything(*args: Any, **kwargs: Any) -> None:
        """Accept anything."""

    @methods.add(access=Access.ADMIN, blocking=True, timeout=2.5)
    def admin_only(flag: bool | None = None, default: object = object()) -> Response:
        """Needs admin."""
        return Response.ok(flag)

    return methods


def method(doc: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [m for m in doc["methods"] if m["name"] == name]
    return found


def test_document_describes_every_method() -> None:
    doc = openrpc_document(sample_methods().specs())
    assert doc["openrpc"] == "1.2.6"
    assert doc["info"]["title"] == "jrpc-unix service"
    assert [m["name"] for m in doc["methods"]] == [
        "plain",
        "by.position",
        "variadic",
        "anything",
        "admin_only",
    ]
    assert method(doc, "plain") == {
        "name": "plain",
        "summary": "Repeat a name.",
        "description": "Repeat a name.\n\nLonger text that explains\nthe details.",
        "params": [
            {"name": "name", "schema": {"type": "string"}, "required": True},
            {"name": "count", "schema": {"type": "integer", "default": 3}, "required": False},
            {"name": "loud", "schema": {"type": "boolean", "default": False}, "required": False},
        ],
        "paramStructure": "by-name",
        "result": {"name": "result", "schema": {"type": "array", "items": {"type": "string"}}},
        "x-access": "operate",
    }
    positional = method(doc, "by.position")
    assert positional["paramStructure"] == "by-position"
    assert "summary" not in positional
    assert [p["required"] for p in positional["params"]] == [True, False]
    variadic = method(doc, "variadic")
    assert variadic["params"] == [
        {"name": "numbers", "schema": {"type": "number"}, "x-variadic": "positional", "required": False}
    ]
    assert variadic["summary"] == "The sum."
    assert "description" not in variadic
    assert method(doc, "anything")["paramStructure"] == "either"
    assert method(doc, "anything")["result"]["schema"] == {"type": "null"}
    admin = method(doc, "admin_only")
    assert admin["x-access"] == "admin"
    assert admin["x-timeout"] == 2.5
    assert admin["result"]["schema"] == {}
    assert admin["params"][1] == {"name": "default", "schema": {}, "required": False}, "no JSON default"


def test_document_lists_the_error_codes() -> None:
    errors = openrpc_document([])["components"]["errors"]
    assert errors["METHOD_NOT_FOUND"] == {"code": -32601, "message": "Method not found"}
    assert errors["SHUTTING_DOWN"] == {"code": -32002, "message": "Server shutting down"}
    assert {e["code"] for e in errors.values()} >= {
        int(c) for c in ErrorCode if c is not ErrorCode.SERVER_ERROR
    }
    assert errors["APPLICATION_ERROR"]["code"] == 1
    assert "SERVER_ERROR" not in errors


def test_fallback_handler_is_mentioned() -> None:
    methods = Methods(handler=lambda cmd, args: None)
    extensions = add_discover({}, methods)
    doc = extensions["rpc.discover"].func()
    assert doc["info"]["description"] == "Method names not listed here go to a generic handler."
    assert [m["name"] for m in doc["methods"]] == ["rpc.discover"]
    assert extensions["rpc.discover"].access is Access.READ


def test_server_answers_rpc_discover(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    with serve_in_thread(path, sample_methods()), Client(path) as client:
        doc = client.call("rpc.discover")
        again = client.call("rpc.discover")
    names = [m["name"] for m in doc["methods"]]
    assert names[:5] == ["plain", "by.position", "variadic", "anything", "admin_only"]
    assert "rpc.discover" in names
    assert doc == again
    assert method(doc, "plain")["params"][0] == {
        "name": "name",
        "schema": {"type": "string"},
        "required": True,
    }


def test_discover_can_be_turned_off(sock_dir: str) -> None:
    path = os.path.join(sock_dir, "s.sock")
    with serve_in_thread(path, sample_methods(), discover=False), Client(path) as client:
        with pytest.raises(RpcError, match=r"^\[-32601\] Method not found$"):
            client.call("rpc.discover")
        assert client.call("plain", "x", 1) == ["x"]


def test_demo_service_document_resolves_its_string_annotations() -> None:
    from jrpc_unix.demo import methods

    doc = openrpc_document(methods.specs())
    assert method(doc, "subtract")["params"] == [
        {"name": "minuend", "schema": {"type": "number"}, "required": True},
        {"name": "subtrahend", "schema": {"type": "number"}, "required": True},
    ]
    assert method(doc, "sum")["paramStructure"] == "by-position"
    assert (
        method(doc, "config.get")["summary"]
        == "The value of configuration ``key``; FAIL if there is no such key."
    )
