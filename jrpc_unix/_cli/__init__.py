"""The jrpc-unix command line (private; the public API is jrpc_unix)."""
