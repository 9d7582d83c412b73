"""What a service is (private; the public API is jrpc_unix)."""
