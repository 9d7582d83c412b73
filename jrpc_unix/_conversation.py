"""Sans-IO client side of a JSON-RPC 2.0 conversation: requests out as bytes, answers in as bytes.

Both clients drive the same :class:`Conversation` (the blocking one over ``socket``, the trio one
over a stream), so ids, matching and error mapping behave identically. Requests are built by
jsonrpcclient (its dicts, our ids) and encoded by :mod:`._codec`. An :class:`Exchange` is one
message that expects answers: a call, or a batch holding at least one call. Answers are matched
by id; an answer nobody waits for any more (the caller was cancelled or timed out) is dropped.

Lines with a ``method`` and no ``id`` are notifications from the server (``rpc.event`` after
``rpc.subscribe``): they are kept for the driver in :attr:`Conversation.notifications`.

An error answer with ``"id": null`` cannot be matched (the server could not read the request's
id: too large, unparseable, refused connection). When exactly one exchange is waiting it must be
the one; otherwise it is kept in :attr:`Conversation.unattributed` for the driver to report.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import jsonrpcclient

from ._codec import UnserializableError, dumps, loads
from ._errors import ProtocolError, RpcError
from ._framing import TOO_LONG, LineSplitter

__all__ = [
    "DEFAULT_MAX_ANSWER",
    "Call",
    "Conversation",
    "Exchange",
    "Notification",
    "Notify",
    "Params",
    "make_params",
]

#: Longest answer line a client accepts, in bytes (answers can be larger than requests).
DEFAULT_MAX_ANSWER: Final = 64 << 20

Params = list[Any] | dict[str, Any] | None


def make_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Params:
    """JSON-RPC params from Python call arguments: positional or named, never both."""
    if args and kwargs:
        raise TypeError("JSON-RPC params are either positional or named, not both")
    if kwargs:
        return kwargs
    return list(args) if args else None


class Notification(NamedTuple):
    """A notification the server sent, such as ``rpc.event`` after ``rpc.subscribe``."""

    method: str
    params: Any


class Call:
    """One call inside a batch: ``Call("subtract", 5, 3)`` or ``Call("config.get", key="level")``."""

    __slots__ = ("method", "params")
    is_notification = False

    def __init__(self, method: str, /, *args: Any, **kwargs: Any) -> None:
        self.method = method
        self.params = make_params(args, kwargs)

    @classmethod
    def with_params(cls, method: str, params: Params) -> Call:
        """Build from a ready params value (a list, a dict or None)."""
        item = cls(method)
        item.params = params
        return item

    def __repr__(self) -> str:
        """As it would be written: ``Call('subtract', 42, 23)``, ``Notify('config.set', key='x')``."""
        name, params = type(self).__name__, self.params
        if params is None:
            return f"{name}({self.method!r})"
        if isinstance(params, list):
            return f"{name}({', '.join(map(repr, [self.method, *params]))})"
        if all(k.isidentifier() for k in params):
            return f"{name}({self.method!r}, {', '.join(f'{k}={v!r}' for k, v in params.items())})"
        return f"{name}.with_params({self.method!r}, {params!r})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Call)
        return (self.method, self.params) == (other.method, other.params)

    __hash__ = None  # type: ignore[assignment]


class Notify(Call):
    """One notification inside a batch: sent, never answered."""

    __slots__ = ()
    is_notification = True


@dataclass(eq=False, slots=True)
class Exchange:
    """A sent message waiting for its answers; ``outcomes`` follow the calls' order."""

    label: str
    ids: list[int]
    outcomes: dict[int, Any] = field(default_factory=dict)  # id -> result, or an RpcError
    raw: list[bytes] = field(default_factory=list)  # the answer line(s), for --raw and traces

    @property
    def done(self) -> bool:
        return len(self.outcomes) == len(self.ids)

    def results(self) -> list[Any]:
        """Results in call order; a failed call's place holds its RpcError (not raised)."""
        return [self.outcomes[i] for i in self.ids]

    def result(self) -> Any:
        """The single call's result, or raise its RpcError."""
        value = self.outcomes[self.ids[0]]
        if isinstance(value, RpcError):
            raise value
        return value


def _encode(obj: Any, what: str) -> bytes:
    try:
        return dumps(obj) + b"\n"
    except UnserializableError as exc:
        raise TypeError(f"cannot send {what}: its params are not JSON ({exc})") from None


def _checked(method: str, params: Params) -> dict[str, Any] | tuple[Any, ...] | None:
    """jsonrpcclient's params form (it drops empty params, which JSON-RPC allows)."""
    if type(method) is not str:
        raise TypeError(f"method name must be a str, not {type(method).__name__}")
    return tuple(params) if isinstance(params, list) else params


def _request(method: str, params: Params, rid: int) -> dict[str, Any]:
    return jsonrpcclient.request(method, _checked(method, params), id=rid)


def _notification(method: str, params: Params) -> dict[str, Any]:
    return jsonrpcclient.notification(method, _checked(method, params))


def _to_error(obj: dict[str, Any]) -> RpcError:
    answer = jsonrpcclient.parse(obj)
    assert isinstance(answer, jsonrpcclient.Error)
    return RpcError(answer.code, answer.message, answer.data)


def _check_answer(obj: Any) -> None:
    """Raise ProtocolError unless ``obj`` is a JSON-RPC 2.0 response object."""
    if type(obj) is not dict or obj.get("jsonrpc") != "2.0" or "id" not in obj:
        raise ProtocolError(f"the server sent something that is not a JSON-RPC answer: {obj!r:.200}")
    if ("result" in obj) == ("error" in obj):
        raise ProtocolError(f"a JSON-RPC answer needs exactly one of result and error: {obj!r:.200}")
    if "error" in obj:
        error = obj["error"]
        well_formed = type(error) is dict and type(error.get("code")) is int
        if not well_formed or type(error.get("message")) is not str:
            raise ProtocolError(f"malformed error object in the server's answer: {obj!r:.200}")


class Conversation:
    """The client's half of one connection's JSON-RPC traffic; see the module docstring."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_ANSWER) -> None:
        self._ids = itertools.count(1)
        self._splitter = LineSplitter(max_message_size)
        self._waiting: dict[int, Exchange] = {}  # call id -> its exchange
        self.max_message_size = max_message_size
        #: Answers that matched nobody (late answers after a cancel or a timeout).
        self.dropped = 0
        #: Error answers with a null id that no single waiting exchange could claim.
        self.unattributed: list[RpcError] = []
        #: Notifications the server sent (``rpc.event`` after ``rpc.subscribe``), not yet taken.
        self.notifications: list[Notification] = []

    # -- outgoing --------------------------------------------------------------------------

    def call(self, method: str, params: Params = None) -> tuple[Exchange, bytes]:
        """A call: the exchange to wait on, and the bytes to send."""
        rid = next(self._ids)
        data = _encode(_request(method, params, rid), repr(method))
        return self._open(Exchange(repr(method), [rid])), data

    def notify(self, method: str, params: Params = None) -> bytes:
        """A notification: just the bytes to send; no answer will come."""
        return _encode(_notification(method, params), repr(method))

    def batch(self, items: Iterable[Call]) -> tuple[Exchange | None, bytes]:
        """A batch: its exchange (None if it holds only notifications) and the bytes to send."""
        objs: list[dict[str, Any]] = []
        ids: list[int] = []
        for item in items:
            if not isinstance(item, Call):
                raise TypeError(f"batch items are Call(...) or Notify(...), not {item!r:.80}")
            if item.is_notification:
                objs.append(_notification(item.method, item.params))
            else:
                rid = next(self._ids)
                ids.append(rid)
                objs.append(_request(item.method, item.params, rid))
        if not objs:
            raise ValueError("a batch needs at least one call or notification")
        data = _encode(objs, f"a batch of {len(objs)}")
        if not ids:
            return None, data
        return self._open(Exchange(f"a batch of {len(objs)}", ids)), data

    def _open(self, exchange: Exchange) -> Exchange:
        for rid in exchange.ids:
            self._waiting[rid] = exchange
        return exchange

    def abandon(self, exchange: Exchange) -> None:
        """Stop waiting for ``exchange`` (cancelled, timed out): its late answers are dropped."""
        for rid in exchange.ids:
            if self._waiting.get(rid) is exchange:
                del self._waiting[rid]

    @property
    def waiting(self) -> list[Exchange]:
        """The exchanges still waiting for answers, oldest first."""
        return list(dict.fromkeys(self._waiting.values()))

    def reset(self) -> list[Exchange]:
        """The connection is gone: forget partial input and return the exchanges left waiting."""
        left = self.waiting
        self._waiting.clear()
        self._splitter = LineSplitter(self.max_message_size)
        return left

    # -- incoming --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Exchange]:
        """Feed received bytes; return the exchanges they completed. ProtocolError is fatal."""
        return self._lines(self._splitter.feed(data))

    def receive_eof(self) -> list[Exchange]:
        """The server closed its side; a final unterminated answer still counts."""
        return self._lines(self._splitter.eof())

    def _lines(self, lines: list[Any]) -> list[Exchange]:
        completed: list[Exchange] = []
        for line in lines:
            if line is TOO_LONG:
                limit = self.max_message_size
                raise ProtocolError(f"the server sent an answer longer than the client's {limit}-byte limit")
            try:
                obj = loads(line)
            except ValueError as exc:
                raise ProtocolError(f"the server sent a line that is not JSON ({exc})") from None
            if type(obj) is dict and "id" not in obj and "method" in obj:
                self._notification(obj)
                continue
            answers = obj if type(obj) is list else [obj]
            touched: list[Exchange] = []
            for answer in answers:
                _check_answer(answer)
                exchange = self._settle(answer)
                if exchange is not None and exchange not in touched:
                    touched.append(exchange)
            for exchange in touched:
                exchange.raw.append(line)
                if exchange.done:
                    self.abandon(exchange)
                    completed.append(exchange)
        return completed

    def _notification(self, obj: dict[str, Any]) -> None:
        if obj.get("jsonrpc") != "2.0" or type(obj["method"]) is not str:
            raise ProtocolError(f"the server sent a malformed notification: {obj!r:.200}")
        self.notifications.append(Notification(obj["method"], obj.get("params")))

    def take_notifications(self) -> list[Notification]:
        """The notifications received since the last call, oldest first."""
        taken, self.notifications = self.notifications, []
        return taken

    def _settle(self, answer: dict[str, Any]) -> Exchange | None:
        rid = answer["id"]
        if rid is None:
            return self._settle_unmatched(_to_error(answer) if "error" in answer else None)
        exchange = self._waiting.get(rid) if type(rid) is int else None
        if exchange is None or rid in exchange.outcomes:
            self.dropped += 1
            return None
        exchange.outcomes[rid] = _to_error(answer) if "error" in answer else answer["result"]
        return exchange

    def _settle_unmatched(self, error: RpcError | None) -> Exchange | None:
        if error is None:  # a result with a null id answers nothing we sent
            self.dropped += 1
            return None
        waiting = self.waiting
        if len(waiting) != 1:
            self.unattributed.append(error)
            return None
        exchange = waiting[0]
        for rid in exchange.ids:
            exchange.outcomes.setdefault(rid, error)
        return exchange
