"""The client a command's shared options describe (parser.py's ``Shared``): ``-v``,
``--timeout``, ``--connect-timeout``, ``--wait`` and ``call --framing``, for every client command,
its own module so that every command module (commands, settings, ...) can use it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .._client.blocking import Client
from .params import UsageError
from .render import say, visible

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from argparse import Namespace as Args
else:
    Args = object  # (annotations only)

__all__ = ["open_client"]


def open_client(args: Args, keep: Callable[[str, bytes], None] | None = None) -> Client:
    """The Client the options describe, connected (waiting ``--wait`` seconds for the socket);
    with ``-v`` every line goes to stderr too, and ``keep`` sees each."""
    if not args.socket:
        raise UsageError("SOCK is empty: give a socket path or @name (or set $JRPC_UNIX_SOCKET)")
    trace = keep
    if args.verbose:
        kind = (
            "ssh"
            if args.socket.startswith("ssh://")
            else "abstract socket"
            if args.socket.startswith("@")
            else "unix socket"
        )
        print(f"jrpc-unix: connecting to {kind} {visible(args.socket)}", file=sys.stderr, flush=True)

        def trace(way: str, line: bytes) -> None:
            arrow = "->" if way == "send" else "<-"
            print(f"{arrow} {visible(line.decode(errors='replace'))}", file=sys.stderr, flush=True)
            if keep is not None:
                keep(way, line)

    client = Client(
        args.socket,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        trace=trace,
        framing=getattr(args, "framing", "newline"),  # call --framing
        log=say if args.verbose else None,  # ssh: which remote side ran
    )
    try:
        client.connect(wait=args.wait)
    except BaseException:
        client.close()
        raise
    return client
