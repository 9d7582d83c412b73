"""The public API is exactly jrpc_unix.__all__, every name resolves, and nothing else leaks."""

from __future__ import annotations

import subprocess
import sys

import jrpc_unix

PUBLIC = {
    "Access", "AddressInUseError", "AsyncClient", "AsyncSubscription", "Call", "Client",
    "ConnectError", "ConnectionClosedError", "ErrorCode", "JrpcUnixError", "Limits", "Methods", "Notify",
    "Peer", "Policy", "ProtocolError", "RequestContext", "Response", "RpcError", "RpcTimeoutError",
    "Server", "ServerSetupError", "ServerThread", "Status", "Subscription", "TransportError",
    "current_context", "open_client", "run", "serve", "serve_in_thread",
}  # fmt: skip


def test_all_is_the_public_api() -> None:
    assert set(jrpc_unix.__all__) == PUBLIC


def test_every_public_name_resolves_and_says_where_it_lives() -> None:
    for name in jrpc_unix.__all__:
        value = getattr(jrpc_unix, name)
        assert getattr(value, "__module__", "jrpc_unix").startswith("jrpc_unix"), name


def test_importing_the_package_imports_neither_trio_nor_jsonrpcserver() -> None:
    heavy = "('trio', 'jsonrpcserver', 'orjson')"
    code = f"import sys, jrpc_unix; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
