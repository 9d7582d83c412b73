"""jrpc-unix: a JSON-RPC 2.0 control plane for a running process, on a UNIX domain socket.

This module is the whole public API, with one submodule: :mod:`jrpc_unix.aio` (serve and call
from an asyncio program; imported by name, so nothing here loads it). Names load lazily, so a
blocking client or the command line never pays for importing trio or jsonrpcserver. Each name
keeps the ``__module__`` of the private module that defines it (no httpx-style rewrite to
``jrpc_unix``: with lazy names it would depend on what was touched first, and
``typing.get_type_hints`` resolves a class's annotations in its ``__module__``;
specs/design-notes.md says more).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:  # what mypy and IDEs see; at run time __getattr__ imports each name on first use
    from ._client.blocking import Client as Client
    from ._client.blocking import Subscription as Subscription
    from ._client.fleet import Fleet as Fleet
    from ._client.fleet import Outcome as Outcome
    from ._client.fleet import expand_targets as expand_targets
    from ._client.fleet_trio import AsyncFleet as AsyncFleet
    from ._client.trio_client import AsyncClient as AsyncClient
    from ._client.trio_client import AsyncSubscription as AsyncSubscription
    from ._client.trio_client import open_client as open_client
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
    from ._response import Response as Response
    from ._response import Status as Status
    from ._server.server import Server as Server
    from ._server.server import run as run
    from ._server.server import serve as serve
    from ._server.sockets import Listen as Listen
    from ._server.thread import ServerThread as ServerThread
    from ._server.thread import serve_in_thread as serve_in_thread
    from ._service.access import Access as Access
    from ._service.access import Peer as Peer
    from ._service.access import Policy as Policy
    from ._service.context import RequestContext as RequestContext
    from ._service.context import current_context as current_context
    from ._service.limits import Limits as Limits
    from ._service.methods import Methods as Methods
    from ._service.settings import setting as setting
    from ._service.settings_methods import Settings as Settings
    from ._version import __version__ as __version__
    from ._wire.requests import Call as Call
    from ._wire.requests import Notify as Notify

#: public name -> the private module that defines it: the same pairs as the imports above, in
#: the same order (tests/test_exported_members.py holds the two lists equal).
_EXPORTS: dict[str, str] = {
    "Client": "_client.blocking",
    "Subscription": "_client.blocking",
    "Fleet": "_client.fleet",
    "Outcome": "_client.fleet",
    "expand_targets": "_client.fleet",
    "AsyncFleet": "_client.fleet_trio",
    "AsyncClient": "_client.trio_client",
    "AsyncSubscription": "_client.trio_client",
    "open_client": "_client.trio_client",
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
    "Response": "_response",
    "Status": "_response",
    "Server": "_server.server",
    "run": "_server.server",
    "serve": "_server.server",
    "Listen": "_server.sockets",
    "ServerThread": "_server.thread",
    "serve_in_thread": "_server.thread",
    "Access": "_service.access",
    "Peer": "_service.access",
    "Policy": "_service.access",
    "RequestContext": "_service.context",
    "current_context": "_service.context",
    "Limits": "_service.limits",
    "Methods": "_service.methods",
    "setting": "_service.settings",
    "Settings": "_service.settings_methods",
    "__version__": "_version",  # lazy too: a CLI start imports this package, never the version
    "Call": "_wire.requests",
    "Notify": "_wire.requests",
}

__all__ = sorted(_EXPORTS.keys() - {"__version__"})


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jrpc_unix' has no attribute {name!r}")
    import importlib  # here, not at the top: every CLI start imports this package

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return [*__all__, "__version__"]
