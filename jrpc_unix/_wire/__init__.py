"""Sans-IO wire core (private; the public API is jrpc_unix)."""
