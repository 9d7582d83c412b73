"""jrpc-unix: a JSON-RPC 2.0 control plane for a running process, on a UNIX domain socket.

This module is the whole public API. Names load lazily, so a blocking client or the command line
never pays for importing trio or jsonrpcserver.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._access import Access as Access
    from ._access import Policy as Policy
    from ._async_subscription import AsyncSubscription as AsyncSubscription
    from ._client import AsyncClient as AsyncClient
    from ._client import open_client as open_client
    from ._context import Peer as Peer
    from ._context import RequestContext as RequestContext
    from ._context import current_context as current_context
    from ._conversation import Call as Call
    from ._conversation import Notify as Notify
    from ._errors import AddressInUseError as AddressInUseError
    from ._errors import ConnectError as ConnectError
    from ._errors import ConnectionClosedError as ConnectionClosedError
    from ._errors import ErrorCode as ErrorCode
    from ._errors import JrpcUnixError as JrpcUnixError
    from ._errors import ProtocolError as ProtocolError
    from ._errors import RpcError as RpcError
    from ._errors import RpcTimeoutError as RpcTimeoutError
    from ._errors import ServerSetupError as ServerSetupError
    from ._errors import TransportError as TransportError
    from ._limits import Limits as Limits
    from ._methods import Methods as Methods
    from ._response import Response as Response
    from ._response import Status as Status
    from ._server import Server as Server
    from ._server import run as run
    from ._server import serve as serve
    from ._subscription import Subscription as Subscription
    from ._sync_client import Client as Client
    from ._thread import ServerThread as ServerThread
    from ._thread import serve_in_thread as serve_in_thread

__version__ = "0.1.0"

#: public name -> the private module that defines it
_EXPORTS: dict[str, str] = {
    "Access": "_access",
    "Policy": "_access",
    "AddressInUseError": "_errors",
    "ConnectError": "_errors",
    "ConnectionClosedError": "_errors",
    "ErrorCode": "_errors",
    "JrpcUnixError": "_errors",
    "ProtocolError": "_errors",
    "RpcError": "_errors",
    "RpcTimeoutError": "_errors",
    "ServerSetupError": "_errors",
    "TransportError": "_errors",
    "Peer": "_context",
    "RequestContext": "_context",
    "current_context": "_context",
    "Limits": "_limits",
    "Methods": "_methods",
    "Response": "_response",
    "Status": "_response",
    "Server": "_server",
    "serve": "_server",
    "run": "_server",
    "ServerThread": "_thread",
    "serve_in_thread": "_thread",
    "Client": "_sync_client",
    "AsyncClient": "_client",
    "open_client": "_client",
    "Call": "_conversation",
    "Notify": "_conversation",
    "Subscription": "_subscription",
    "AsyncSubscription": "_async_subscription",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jrpc_unix' has no attribute {name!r}")
    import importlib  # here, not at the top: every CLI start imports this package

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
