"""The clients (private; the public API is jrpc_unix)."""
