"""Every exception jrpc-unix raises, and the JSON-RPC error codes it speaks.

One tree, so callers can catch as broadly or as narrowly as they need::

    JrpcUnixError
    ├── RpcError                 the peer answered with a JSON-RPC error object
    ├── ProtocolError            the peer sent something that is not JSON-RPC 2.0
    ├── TransportError           the socket failed us
    │   ├── ConnectError         cannot connect (missing file, refused, permission, path too long)
    │   ├── ConnectionClosedError   the connection closed before the answer arrived
    │   └── RpcTimeoutError      no answer in time (also a builtin TimeoutError)
    └── ServerSetupError         a server cannot start listening
        └── AddressInUseError    another live server owns the socket path

Messages are written for a person reading a terminal: they say what failed and where.
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "AddressInUseError",
    "ConnectError",
    "ConnectionClosedError",
    "ErrorCode",
    "JrpcUnixError",
    "ProtocolError",
    "RpcError",
    "RpcTimeoutError",
    "ServerSetupError",
    "TransportError",
    "sole_exception",
]


class ErrorCode(enum.IntEnum):
    """JSON-RPC 2.0 error codes: the spec's five, then ours from the -32000..-32099 range."""

    PARSE_ERROR = -32700
    INVALID_REQUEST = -32600
    METHOD_NOT_FOUND = -32601
    INVALID_PARAMS = -32602
    INTERNAL_ERROR = -32603
    #: jsonrpcserver's generic "Server error"; we never emit it ourselves.
    SERVER_ERROR = -32000
    #: A message (line) or batch longer than the server's limit.
    REQUEST_TOO_LARGE = -32001
    #: The server is stopping and no longer starts new work.
    SHUTTING_DOWN = -32002
    #: The caller's credentials do not allow this connection or method.
    ACCESS_DENIED = -32003
    #: The handler ran longer than its time limit and was cancelled.
    TIMEOUT = -32004
    #: The call was cancelled (``rpc.cancel``, or the server cancelled it).
    CANCELLED = -32005
    #: A server limit (connections, subscriptions per connection) refused the work.
    OVERLOADED = -32006
    #: ``settings.set`` with an ``expected_version`` that is not the current one (data: it).
    SETTINGS_VERSION_CONFLICT = -32010
    #: A settings hook raised; the change was undone (data: the setting and the reason).
    SETTINGS_HOOK_FAILED = -32011
    #: Another settings change is awaiting its hooks; nothing was changed: retry.
    SETTINGS_BUSY = -32012

    @classmethod
    def is_reserved(cls, code: int) -> bool:
        """True for codes the JSON-RPC 2.0 spec reserves (-32768..-32000)."""
        return -32768 <= code <= -32000


#: The message text of each code, as the spec spells it.
ERROR_MESSAGES: dict[int, str] = {
    ErrorCode.PARSE_ERROR: "Parse error",
    ErrorCode.INVALID_REQUEST: "Invalid Request",
    ErrorCode.METHOD_NOT_FOUND: "Method not found",
    ErrorCode.INVALID_PARAMS: "Invalid params",
    ErrorCode.INTERNAL_ERROR: "Internal error",
    ErrorCode.SERVER_ERROR: "Server error",
    ErrorCode.REQUEST_TOO_LARGE: "Request too large",
    ErrorCode.SHUTTING_DOWN: "Server shutting down",
    ErrorCode.ACCESS_DENIED: "Access denied",
    ErrorCode.TIMEOUT: "Handler timed out",
    ErrorCode.CANCELLED: "Cancelled",
    ErrorCode.OVERLOADED: "Server overloaded",
    ErrorCode.SETTINGS_VERSION_CONFLICT: "Settings version conflict",
    ErrorCode.SETTINGS_HOOK_FAILED: "Settings hook failed",
    ErrorCode.SETTINGS_BUSY: "Settings change in progress",
}


class JrpcUnixError(Exception):
    """Base of every exception raised by jrpc-unix."""


class RpcError(JrpcUnixError):
    """The server answered a call with a JSON-RPC error object.

    Prints as ``[code] message``, like jrpc2 and lightning-cli do, so logs stay greppable.
    Handlers may raise it too: the server turns it into that error object.
    """

    code: int
    message: str
    # data: typed Any by __init__ (a class annotation would need typing at run time, for
    # typing.get_type_hints, and typing's import is a share of a CLI start)

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def __repr__(self) -> str:
        return f"RpcError(code={self.code!r}, message={self.message!r}, data={self.data!r})"


class ProtocolError(JrpcUnixError):
    """The peer sent bytes that are not a valid JSON-RPC 2.0 message."""


class TransportError(JrpcUnixError):
    """The UNIX socket could not carry the conversation."""


class ConnectError(TransportError):
    """Cannot connect to the socket; the message names the path and the reason.

    ``not_up``: nothing listens there yet (no socket file, or nobody accepting on it), which a
    caller starting a service may wait out (``Client.connect(wait=...)``).
    """

    def __init__(self, message: str, *, not_up: bool = False) -> None:
        super().__init__(message)
        self.not_up = not_up


class ConnectionClosedError(TransportError):
    """The connection closed before the answer to a call arrived."""


class RpcTimeoutError(TransportError, TimeoutError):
    """No answer arrived within the time limit."""


class ServerSetupError(JrpcUnixError):
    """A server could not start listening on its socket."""


class AddressInUseError(ServerSetupError):
    """Another server is alive on the socket path; we never steal a live socket."""


def sole_exception(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception in ``group``, however deep in single-member groups (trio's nurseries
    wrap what they raise), or ``group`` itself when it holds several."""
    while len(group.exceptions) == 1:
        inner: BaseException = group.exceptions[0]
        if not isinstance(inner, BaseExceptionGroup):
            return inner
        group = inner
    return group
