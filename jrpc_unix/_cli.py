"""``jrpc-unix``: call, notify, batch, list methods, serve, or take the guided demo.

Habits of ``lightning-cli`` and ``varlinkctl``: params as JSON, ``key=value`` or plain words;
results as JSON on stdout (pretty on a terminal); errors on stderr as ``error [code] message``;
exit codes that tell a script what went wrong. Shell scripts call it in loops, so the client
commands import neither trio nor jsonrpcserver: ``serve`` and ``demo`` import them when run.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from ._cli_params import UsageError, batch_item, parse_params, parse_timeout
from ._cli_render import pretty, print_json, print_line, print_rpc_error
from ._conversation import Call
from ._errors import JrpcUnixError, RpcError
from ._sync_client import Client

__all__ = ["EXIT_OK", "EXIT_RPC_ERROR", "EXIT_TRANSPORT", "EXIT_USAGE", "UsageError", "main", "run"]

EXIT_OK = 0  # success
EXIT_RPC_ERROR = 1  # the server answered with a JSON-RPC error
EXIT_USAGE = 2  # bad command line or input (argparse's own code)
EXIT_TRANSPORT = 3  # cannot connect, connection lost, timeout, protocol violation, cannot listen


# -- the client commands ---------------------------------------------------------------------


def _client(args: argparse.Namespace) -> Client:
    return Client(args.socket, timeout=args.timeout)


def cmd_call(args: argparse.Namespace) -> int:
    params = parse_params(args.params, args.style)
    with _client(args) as client:
        result, raw = client.call_raw(args.method, params)
    if args.raw:
        print_line(raw)
    else:
        print_json(result, pretty(args.pretty))
    return EXIT_OK


def cmd_notify(args: argparse.Namespace) -> int:
    params = parse_params(args.params, args.style)
    with _client(args) as client:
        client.send(args.method, params, respond=False)
    return EXIT_OK


def cmd_batch(args: argparse.Namespace) -> int:
    items: list[Call] = []
    for number, line in enumerate(sys.stdin, 1):
        try:
            item = batch_item(line, args.style)
        except UsageError as exc:
            raise UsageError(f"stdin line {number}: {exc}") from None
        if item is not None:
            items.append(item)
    if not items:
        raise UsageError("no requests on stdin (one per line: METHOD [PARAMS], or a JSON request)")
    lines: list[bytes] = []

    def keep(way: str, line: bytes) -> None:
        if way == "recv":
            lines.append(line)

    with Client(args.socket, timeout=args.timeout, trace=keep) as client:
        results = client.batch(*items)
    if args.raw:
        for line in lines:
            print_line(line)
    status = EXIT_OK
    for rid, value in enumerate(results, 1):
        if isinstance(value, RpcError):
            status = EXIT_RPC_ERROR
            print_rpc_error(value, prefix=f"call {rid}: ")
            error = {"code": value.code, "message": value.message}
            if value.data is not None:
                error["data"] = value.data
            answer: dict[str, Any] = {"jsonrpc": "2.0", "error": error, "id": rid}
        else:
            answer = {"jsonrpc": "2.0", "result": value, "id": rid}
        if not args.raw:
            print_json(answer, False)
    return status


def cmd_methods(args: argparse.Namespace) -> int:
    from ._cli_render import render_method, render_methods

    with _client(args) as client:
        try:
            doc = client.call("rpc.discover")
        except RpcError as exc:
            if exc.code == -32601:
                exc.message += " (this server does not offer rpc.discover)"
            raise
    if args.json:
        print_json(doc, pretty(args.pretty))
        return EXIT_OK
    methods = doc.get("methods", [])
    if args.method is None:
        print(render_methods(methods))
        return EXIT_OK
    for method in methods:
        if method.get("name") == args.method:
            print(render_method(method))
            return EXIT_OK
    print(f"error: {args.socket} has no method {args.method!r}", file=sys.stderr)
    return EXIT_RPC_ERROR


def cmd_stats(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print_json(client.call("rpc.stats"), pretty(args.pretty))
    return EXIT_OK


def cmd_watch(args: argparse.Namespace) -> int:
    """Subscribe to a topic and print each event's data, one JSON per line, until --count."""
    params = parse_params(args.params, "keywords")
    assert not isinstance(params, list)
    with _client(args) as client:
        client.call("rpc.subscribe", topic=args.topic, **(params or {}))
        seen = 0
        while args.count is None or seen < args.count:
            note = client.wait_notification(timeout=None)  # events may be far apart
            if note.method == "rpc.event" and isinstance(note.params, dict):
                print_json(note.params.get("data"), bool(args.pretty))
                seen += 1
            elif note.method == "rpc.dropped" and isinstance(note.params, dict):
                print(
                    f"jrpc-unix: {note.params.get('count')} events dropped (reading too slowly)",
                    file=sys.stderr,
                )
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from ._cli_serve import serve_command

    return serve_command(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import tour

    return tour(timeout=args.timeout)


# -- the command line ------------------------------------------------------------------------


def build_parser(serve: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jrpc-unix",
        description="Talk JSON-RPC 2.0 to a service on a UNIX socket, or serve one.",
        epilog="exit codes: 0 ok, 1 the server answered with an error, 2 usage, "
        "3 cannot connect / connection lost / timeout.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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

    def add(
        name: str,
        func: Callable[[argparse.Namespace], int],
        help: str,
        parents: list[argparse.ArgumentParser],
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help, parents=parents)
        sub.set_defaults(func=func)
        return sub

    sub = add("call", cmd_call, "call METHOD and print its result", [sock, output, style])
    sub.add_argument("method", metavar="METHOD")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help=params_help)
    sub.add_argument("--raw", action="store_true", help="print the whole answer line as received")

    sub = add("notify", cmd_notify, "send a notification (no answer)", [sock, style])
    sub.add_argument("method", metavar="METHOD")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help=params_help)

    sub = add("batch", cmd_batch, "send stdin's requests (one per line) as one batch", [sock, style])
    sub.add_argument("--raw", action="store_true", help="print the batch answer as received")

    sub = add("methods", cmd_methods, "list the server's methods (rpc.discover)", [sock, output])
    sub.add_argument("method", metavar="METHOD", nargs="?", help="show this method in full")
    sub.add_argument("--json", action="store_true", help="print the OpenRPC document")

    add("stats", cmd_stats, "print the server's live figures (rpc.stats)", [sock, output])

    sub = add("watch", cmd_watch, "subscribe to a TOPIC and print its events, one per line", [sock, output])
    sub.add_argument("topic", metavar="TOPIC", help="stats, progress, or one the service declares")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help="the topic's params, key=value")
    sub.add_argument("--count", type=int, metavar="N", help="stop after N events (default: never)")

    sub = add("serve", cmd_serve, "serve a Methods object until SIGTERM/SIGINT", [])
    if serve:  # its many options cost imports the client commands must not pay
        from ._cli_serve import add_serve_options

        add_serve_options(sub)
    add("demo", cmd_demo, "start the demo service, drive it, show what happened", [waits])
    return parser


def _version() -> str:
    from . import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (never raises for an expected failure)."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(serve=bool(argv) and argv[0] == "serve")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        code: int = args.func(args)
        return code
    except UsageError as exc:
        print(f"jrpc-unix {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RpcError as exc:
        print_rpc_error(exc)
        return EXIT_RPC_ERROR
    except JrpcUnixError as exc:  # cannot connect or listen, connection lost, timeout, protocol
        print(f"jrpc-unix: {exc}", file=sys.stderr)
        return EXIT_TRANSPORT
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The console script: ``sys.exit(main())``, quiet when stdout is a closed pipe."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `jrpc-unix ... | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_OK
    sys.exit(code)
