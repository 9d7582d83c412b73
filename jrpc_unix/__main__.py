"""``python -m jrpc_unix``: the ``jrpc-unix`` command line."""

from ._cli.main import run

if __name__ == "__main__":
    run()
