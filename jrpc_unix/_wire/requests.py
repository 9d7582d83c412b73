"""What a client sends: params from Python arguments, the items of a batch, the request objects
and their bytes on the wire.

Shared by both clients and the command line; no I/O. The request objects are jsonrpcclient's
(``request``/``notification``, a fixed choice of the project), written out here: importing
jsonrpcclient loads its id generators (``uuid``, ``platform``, ``random``), about a third of a
whole ``jrpc-unix call`` (specs/performance.md), and each object is one dict literal.
``tests/wire/test_requests.py`` holds them equal to jsonrpcclient's, bytes on the wire included.
"""

from __future__ import annotations

from .stdjson import UnserializableError, dumps

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    Params: TypeAlias = list[Any] | dict[str, Any] | None
    _MethodAndParams: TypeAlias = tuple[str, Any]
else:
    Params = list | dict | None
    _MethodAndParams = tuple

__all__ = [
    "Call",
    "Notification",
    "Notify",
    "Params",
    "encode",
    "make_params",
    "notification_obj",
    "request_obj",
    "seed_params",
]


def make_params(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Params:
    """JSON-RPC params from Python call arguments: positional or named, never both."""
    if args and kwargs:
        raise TypeError("JSON-RPC params are either positional or named, not both")
    if kwargs:
        return kwargs
    return list(args) if args else None


class Notification(_MethodAndParams):
    """A notification the server sent: ``(method, params)`` with those names.

    A NamedTuple would do, but building one at import is a measurable share of a whole
    ``jrpc-unix call`` (specs/performance.md).
    """

    __slots__ = ()

    def __new__(cls, method: str, params: Any) -> Notification:
        return tuple.__new__(cls, (method, params))

    @property
    def method(self) -> str:
        return self[0]

    @property
    def params(self) -> Any:
        return self[1]

    def __repr__(self) -> str:
        return f"Notification(method={self[0]!r}, params={self[1]!r})"


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


def encode(obj: Any, what: str) -> bytes:
    """One message as a line of compact JSON; TypeError (naming ``what``) if it is not JSON."""
    try:
        return dumps(obj) + b"\n"
    except UnserializableError as exc:
        raise TypeError(f"cannot send {what}: its params are not JSON ({exc})") from None


def _not_a_name(method: object) -> TypeError:
    return TypeError(f"method name must be a str, not {type(method).__name__}")


def request_obj(method: str, params: Params, rid: int) -> dict[str, Any]:
    """A call's request object, as ``jsonrpcclient.request(method, params, id=rid)`` builds it:
    empty params are left out (JSON-RPC allows it)."""
    if type(method) is not str:
        raise _not_a_name(method)
    if params:
        return {"jsonrpc": "2.0", "method": method, "params": params, "id": rid}
    return {"jsonrpc": "2.0", "method": method, "id": rid}


def notification_obj(method: str, params: Params) -> dict[str, Any]:
    """A notification's request object, as ``jsonrpcclient.notification(method, params)``."""
    if type(method) is not str:
        raise _not_a_name(method)
    if params:
        return {"jsonrpc": "2.0", "method": method, "params": params}
    return {"jsonrpc": "2.0", "method": method}


def seed_params(args: Any) -> Params:
    """``send()``'s ``args`` (the Go original's): a dict, a list or tuple, or None."""
    if args is None or isinstance(args, (list, dict)):
        return args
    if isinstance(args, tuple):
        return list(args)
    raise TypeError(f"send() args must be a dict, list, tuple or None, not {type(args).__name__}")
