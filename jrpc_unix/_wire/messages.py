"""Sans-IO JSON-RPC 2.0 messages on the server side: a line in, requests out; answers to bytes.

:func:`parse_line` turns one framed line into a :class:`Message`: its members are valid
:class:`Request` objects, or ready error answers for members that are not (a batch answers per
member, as the spec wants, and its valid members still run). :func:`is_valid_request` is a
structural check with exactly the outcomes of jsonrpcserver's JSON schema (the differential test
in ``tests/test_protocol.py`` holds it to that) at a fraction of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from .._errors import ERROR_MESSAGES, ErrorCode
from .fastjson import UnserializableError, dumps, loads

__all__ = [
    "FAILED_NOTIFICATION",
    "NO_DATA",
    "Message",
    "Request",
    "encode_error",
    "encode_result",
    "is_valid_request",
    "parse_json",
    "parse_line",
]


class _NoData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DATA"


#: Marks an error object without a ``data`` member (``None`` is a valid ``data``).
NO_DATA: Final = _NoData()

#: The "answer" to a notification that failed: counted as an error, never sent.
FAILED_NOTIFICATION: Final = b""

_MEMBERS: Final = frozenset(("jsonrpc", "method", "id", "params"))


@dataclass(slots=True)
class Request:
    """One valid request object. ``is_notification`` when it has no ``id`` member."""

    method: str
    params: list[Any] | dict[str, Any] | None
    id: Any = None
    is_notification: bool = False


@dataclass(slots=True)
class Message:
    """One line's content: a single request or a batch, each member a Request or an answer.

    ``items`` keeps the members in order; an answer is the encoded error for an invalid member.
    """

    items: list[Request | bytes] = field(default_factory=list)
    is_batch: bool = False


def is_valid_request(obj: Any) -> bool:
    """Does ``obj`` satisfy jsonrpcserver's request schema (one request, not a batch)?"""
    if type(obj) is not dict or obj.get("jsonrpc") != "2.0" or type(obj.get("method")) is not str:
        return False
    if len(obj) > 2 and not obj.keys() <= _MEMBERS:
        return False
    if "id" in obj:
        rid = obj["id"]
        if rid is not None and type(rid) not in (str, int, float):
            return False
    return "params" not in obj or type(obj["params"]) in (list, dict)


def _echo_id(obj: Any) -> Any:
    """The id to answer an invalid request with: its own id when that id is well-formed."""
    if type(obj) is dict:
        rid = obj.get("id")
        if type(rid) in (str, int, float):
            return rid
    return None


def _member(obj: Any) -> Request | bytes:
    if is_valid_request(obj):
        if "id" in obj:
            return Request(obj["method"], obj.get("params"), obj["id"])
        return Request(obj["method"], obj.get("params"), None, True)
    return encode_error(_echo_id(obj), ErrorCode.INVALID_REQUEST)


def parse_line(line: bytes, max_batch: int) -> Message:
    """Parse one framed line; never raises for bad input (it becomes an answer)."""
    try:
        obj = loads(line)
    except ValueError as exc:
        return Message([encode_error(None, ErrorCode.PARSE_ERROR, data=_parse_reason(exc))])
    return parse_json(obj, max_batch)


def parse_json(obj: Any, max_batch: int) -> Message:
    """:func:`parse_line` for a line already parsed as JSON."""
    if type(obj) is list:
        if not obj:
            return Message([encode_error(None, ErrorCode.INVALID_REQUEST, data="empty batch")])
        if len(obj) > max_batch:
            data = f"batch of {len(obj)} requests exceeds the limit of {max_batch}"
            return Message([encode_error(None, ErrorCode.REQUEST_TOO_LARGE, data=data)])
        return Message([_member(item) for item in obj], is_batch=True)
    return Message([_member(obj)])


def _parse_reason(exc: ValueError) -> str:
    text = str(exc)
    if isinstance(exc, UnicodeDecodeError) or "UTF-8" in text:
        return "the message is not valid UTF-8"
    return text


def encode_result(rid: Any, result: Any) -> bytes:
    """The answer line (without ``\\n``) for a successful call."""
    try:
        return dumps({"jsonrpc": "2.0", "result": result, "id": rid})
    except UnserializableError as exc:
        return encode_error(rid, ErrorCode.INTERNAL_ERROR, data=f"result is not JSON: {exc}")


def encode_error(rid: Any, code: int, message: str | None = None, data: Any = NO_DATA) -> bytes:
    """The answer line (without ``\\n``) for an error; an unserializable ``data`` is dropped."""
    error: dict[str, Any] = {"code": code, "message": message or ERROR_MESSAGES.get(code, "Error")}
    if data is not NO_DATA:
        error["data"] = data
    try:
        body = dumps(error)
    except UnserializableError:
        del error["data"]
        body = dumps(error)
    return b'{"jsonrpc":"2.0","error":' + body + b',"id":' + dumps(rid) + b"}"
