"""The trio server (private; the public API is jrpc_unix)."""
