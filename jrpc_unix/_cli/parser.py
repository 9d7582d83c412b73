"""The ``jrpc-unix`` command line's argparse parser.

Imported only when :func:`jrpc_unix._cli.main.quick_args` cannot read the command line itself:
importing argparse and building this parser are a large share of a whole ``jrpc-unix call``
(specs/performance.md).
"""

from __future__ import annotations

import argparse

from .._version import __version__
from .params import parse_timeout

__all__ = ["build_parser"]


#: jrpc_unix._wire.framings.NAMES, named here so the parser imports nothing (a test holds them equal).
FRAMINGS = ("newline", "unixsock", "lsp", "json-seq")


def build_parser(serve: bool = True) -> argparse.ArgumentParser:
    """The parser; ``args.command`` names the command. ``serve=False`` leaves out serve's
    many options (they import the server's Limits)."""
    parser = argparse.ArgumentParser(
        prog="jrpc-unix",
        description="Talk JSON-RPC 2.0 to a service on a UNIX socket, or serve one.",
        epilog="exit codes: 0 ok, 1 the server answered with an error, 2 usage, "
        "3 cannot connect / connection lost / timeout, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    waits = argparse.ArgumentParser(add_help=False)
    waits.add_argument(
        "--timeout",
        type=parse_timeout,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long (default 30; 0 waits forever)",
    )
    sock = argparse.ArgumentParser(add_help=False, parents=[waits])
    sock.add_argument("socket", metavar="SOCK", help="the server's socket path (or @name)")
    output = argparse.ArgumentParser(add_help=False)
    shape = output.add_mutually_exclusive_group()
    shape.add_argument("--pretty", action="store_true", default=None, help="indented JSON")
    shape.add_argument("--compact", dest="pretty", action="store_false", help="one-line JSON")
    style = argparse.ArgumentParser(add_help=False)
    how = style.add_mutually_exclusive_group()
    how.add_argument(
        "-k",
        "--keywords",
        dest="style",
        action="store_const",
        const="keywords",
        default="auto",
        help="params are key=value pairs",
    )
    how.add_argument(
        "-o",
        "--ordered",
        dest="style",
        action="store_const",
        const="ordered",
        help="params are positional words, even if they contain '='",
    )
    params_help = "a JSON array/object, key=value pairs, plain words, or - to read JSON from stdin"

    def add(name: str, help: str, parents: list[argparse.ArgumentParser]) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=parents)

    sub = add("call", "call METHOD and print its result", [sock, output, style])
    sub.add_argument("method", metavar="METHOD")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help=params_help)
    sub.add_argument("--raw", action="store_true", help="print the whole answer line as received")
    sub.add_argument(
        "--framing",
        choices=FRAMINGS,
        default="newline",
        help="how messages are cut on the wire (unixsock: a Go original's server; its payload is printed)",
    )

    sub = add("notify", "send a notification (no answer)", [sock, style])
    sub.add_argument("method", metavar="METHOD")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help=params_help)

    sub = add("batch", "send stdin's requests (one per line) as one batch", [sock, style])
    sub.add_argument("--raw", action="store_true", help="print the batch answer as received")

    sub = add("methods", "list the server's methods (rpc.discover)", [sock, output])
    sub.add_argument("method", metavar="METHOD", nargs="?", help="show this method in full")
    sub.add_argument("--json", action="store_true", help="print the OpenRPC document")

    stats_help = "the server's live figures (rpc.stats): a table on a terminal, else JSON"
    sub = add("stats", stats_help, [sock, output])
    form = sub.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="JSON even on a terminal")
    form.add_argument("--table", action="store_true", help="a table even when piped")
    form.add_argument("--openmetrics", action="store_true", help="OpenMetrics text (rpc.metrics)")

    sub = add("watch", "subscribe to TOPIC and print each event, one JSON per line", [sock, output])
    sub.add_argument("topic", metavar="TOPIC", help="stats, progress, or one the service declares")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help="the topic's params, key=value")
    sub.add_argument("--count", type=int, metavar="N", help="stop after N events (default: never)")
    sub.add_argument("--since", type=int, metavar="SEQ", help="first the kept events after SEQ (resume)")
    sub.add_argument("--epoch", metavar="EPOCH", help="the epoch SEQ was seen in (a restart is then told)")

    from .settings import add_settings_commands

    add_settings_commands(add, sock, output)

    from .ops import add_ops_commands

    add_ops_commands(add, sock, output)
    sub = add("serve", "serve a Methods object until SIGTERM/SIGINT", [])
    if serve:  # its many options cost imports the client commands must not pay
        from .serve import add_serve_options

        add_serve_options(sub)
    add("demo", "start the demo service, drive it, show what happened", [waits])
    return parser
