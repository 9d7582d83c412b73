"""Sans-IO JSON-RPC 2.0 messages on the server side: lines in, requests out; outcomes to bytes.

Reading: :func:`parser_for` picks the JSON parser for one read's lines (orjson, or the exact
parser when a line may hold an integer orjson would round); what it parses becomes a
:class:`Message` through :func:`parse_json`, and what it cannot parse through
:func:`unparsable`. A Message's members are valid :class:`Request` objects, or ready error
answers for members that are not (a batch answers per member, as the spec wants, and its valid
members still run). :func:`is_valid_request` is a structural check with exactly the outcomes of
jsonrpcserver's JSON schema (the differential test in ``tests/wire/test_messages.py`` holds it
to that) at a fraction of the cost.

Answering: a request's outcome (:data:`Answer`) is the bytes of a successful answer, ``None``
for a notification that succeeded, or an :class:`ErrorAnswer`, which says it failed beside the
line it sends. :func:`error_answer` is the one policy for errors: a call gets the error object,
a notification nothing (it is never answered), and both are counted as errors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, TypeAlias

from .._errors import ERROR_MESSAGES, ErrorCode
from . import fastjson
from .fastjson import UnserializableError, dumps, loads
from .framing import TOO_LONG, BadFrame

__all__ = [
    "NO_DATA",
    "Answer",
    "ErrorAnswer",
    "LineTooLong",
    "Message",
    "Request",
    "encode_error",
    "encode_result",
    "error_answer",
    "is_valid_request",
    "parse_json",
    "parse_line",
    "parser_for",
    "result_answer",
    "unparsable",
]


class _NoData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DATA"


#: Marks an error object without a ``data`` member (``None`` is a valid ``data``).
NO_DATA: Final = _NoData()

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

    ``items`` keeps the members in order; an answer is the encoded error for an invalid member,
    counted in ``rpc.stats`` under ``reason``: "invalid_request", or for a line that is not a
    request at all "parse_error" (not JSON) or "too_large" (longer than the limit).
    """

    items: list[Request | bytes] = field(default_factory=list)
    is_batch: bool = False
    reason: str = "invalid_request"


class ErrorAnswer:
    """A request's outcome when it failed: ``line`` to send, or None for a notification.

    ``reason`` is the ``rpc.stats`` "rejected_requests" key it also counts under (the request
    was refused, cancelled, timed out...); "" for an error the handler or the dispatcher gave.
    """

    __slots__ = ("line", "reason")

    def __init__(self, line: bytes | None, reason: str = "") -> None:
        self.line = line
        self.reason = reason

    def __repr__(self) -> str:
        return f"ErrorAnswer({self.line!r}, {self.reason!r})"


#: A request's outcome: a successful answer's bytes, None (a notification that succeeded:
#: nothing to send), or an :class:`ErrorAnswer`.
Answer: TypeAlias = bytes | ErrorAnswer | None


def error_answer(
    rid: Any, notification: bool, code: int, message: str | None = None, data: Any = NO_DATA, reason: str = ""
) -> ErrorAnswer:
    """The one answer policy for errors: the error object for a call, nothing for a notification."""
    return ErrorAnswer(None if notification else encode_error(rid, code, message, data), reason)


class LineTooLong(ValueError):
    """Raised by :func:`parser_for`'s parser for a line the framing dropped as too long."""


def _exact_or_too_long(line: Any) -> Any:
    if line is TOO_LONG:
        raise LineTooLong
    if isinstance(line, BadFrame):  # (the framing's reason is the -32700's data)
        raise ValueError(line.reason)  # noqa: TRY004 - parse errors are ValueErrors here
    return loads(line)


def parser_for(lines: Sequence[Any]) -> Callable[[Any], Any]:
    """The JSON parser for one read's lines (framed: bytes, or a TOO_LONG or BadFrame marker).

    ``orjson.loads`` itself when no line holds a run of 19+ digits, else the exact parser
    (:func:`~jrpc_unix._wire.fastjson.parser_for`: one check per read, not per line). It raises
    ValueError for a line that is not JSON, :class:`LineTooLong` for the marker; see
    :func:`unparsable`.
    """
    try:  # "\n" cannot be part of a digit run, so the joined lines are checked as a whole
        text = b"\n".join(lines)
    except TypeError:  # a marker among them: the exact parser, which knows the markers
        return _exact_or_too_long
    return fastjson.parser_for(text)


def unparsable(exc: ValueError, max_size: int) -> Message:
    """The Message for a line the parser refused: -32001 if too long, else -32700 and why."""
    if isinstance(exc, LineTooLong):
        data = f"message exceeds the limit of {max_size} bytes"
        return Message([encode_error(None, ErrorCode.REQUEST_TOO_LARGE, data=data)], reason="too_large")
    return Message([encode_error(None, ErrorCode.PARSE_ERROR, data=_parse_reason(exc))], reason="parse_error")


def is_valid_request(obj: Any) -> bool:
    """Does ``obj`` satisfy jsonrpcserver's request schema (one request, not a batch)?"""
    if not isinstance(obj, dict) or obj.get("jsonrpc") != "2.0" or not isinstance(obj.get("method"), str):
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
    if isinstance(obj, dict):
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
        return unparsable(exc, 0)
    return parse_json(obj, max_batch)


def parse_json(obj: Any, max_batch: int) -> Message:
    """The Message of one line's JSON value (see :func:`parser_for`)."""
    if isinstance(obj, list):
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


def result_answer(rid: Any, result: Any) -> bytes | ErrorAnswer:
    """A successful call's answer line (without ``\\n``); -32603 if ``result`` is not JSON."""
    try:
        return dumps({"jsonrpc": "2.0", "result": result, "id": rid})
    except UnserializableError as exc:
        return ErrorAnswer(encode_error(rid, ErrorCode.INTERNAL_ERROR, data=f"result is not JSON: {exc}"))


def encode_result(rid: Any, result: Any) -> bytes:
    """:func:`result_answer` as bytes, whatever the outcome."""
    answer = result_answer(rid, result)
    if isinstance(answer, ErrorAnswer):
        assert answer.line is not None  # (a call's: it has a line)
        return answer.line
    return answer


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
