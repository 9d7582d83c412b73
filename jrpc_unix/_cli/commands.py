"""The ``jrpc-unix`` commands themselves; :mod:`.main` reads the command line and runs one.

Each takes the parsed arguments and returns an exit code; expected failures are raised
(UsageError, RpcError, JrpcUnixError) for :func:`jrpc_unix._cli.main.main` to report.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .._errors import RpcError
from .._wire.requests import Call
from .connecting import open_client
from .exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_RPC_ERROR, EXIT_TERMINATED
from .params import UsageError, batch_item, parse_params
from .remote import fan_out, fan_out_targets
from .render import ProgressBar, pretty, print_json, print_raw, print_rpc_error, visible

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from argparse import Namespace as Args
    from typing import Any

    from .._client.blocking import Subscription
else:
    Args = object  # (annotations only)

__all__ = ["COMMANDS", "Terminated", "command"]


def cmd_call(args: Args) -> int:
    """Print the result; on a terminal, draw the call's progress reports on stderr meanwhile.
    ``--raw`` prints the answer line as received, an error answer's too (then exit 1)."""
    targets = fan_out_targets(args)
    params = parse_params(args.params, args.style)
    if targets is not None:
        return fan_out(args, targets, lambda client: client.call_raw(args.method, params)[0])
    bar = ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    lines: list[bytes] = []

    def keep(way: str, line: bytes) -> None:
        if way == "recv":
            lines.append(line)

    with open_client(args, keep if args.raw else None) as client:
        try:
            result, raw = client.call_raw(args.method, params, progress=bar)
        except RpcError:
            if args.raw and lines:
                print_raw(lines[-1])
            raise
        finally:
            if bar is not None:
                bar.clear()
    if args.raw:
        print_raw(raw)
    elif args.framing == "unixsock" and isinstance(result, str):
        print(result)  # the Go server's payload, as the Go client would hand it over
    else:
        print_json(result, pretty(args.pretty))
    return EXIT_OK


def cmd_notify(args: Args) -> int:
    targets = fan_out_targets(args)
    params = parse_params(args.params, args.style)
    if targets is not None:
        return fan_out(args, targets, lambda client: client.send(args.method, params, respond=False))
    with open_client(args) as client:
        client.send(args.method, params, respond=False)
    return EXIT_OK


def cmd_batch(args: Args) -> int:
    targets = fan_out_targets(args)
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
    if targets is not None:
        return fan_out(
            args, targets, lambda client: [_answer(i, v) for i, v in enumerate(client.batch(*items), 1)]
        )
    lines: list[bytes] = []

    def keep(way: str, line: bytes) -> None:
        if way == "recv":
            lines.append(line)

    with open_client(args, keep) as client:
        results = client.batch(*items)
    if args.raw:
        for line in lines:
            print_raw(line)
    status = EXIT_OK
    for rid, value in enumerate(results, 1):
        if isinstance(value, RpcError):
            status = EXIT_RPC_ERROR
            print_rpc_error(value, prefix=f"call {rid}: ")
        if not args.raw:
            print_json(_answer(rid, value), False)
    return status


def _answer(rid: int, value: Any) -> dict[str, Any]:
    """A batch place as the JSON-RPC answer it was (ids counted from 1 in call order)."""
    if isinstance(value, RpcError):
        error = {"code": value.code, "message": value.message}
        if value.data is not None:
            error["data"] = value.data
        return {"jsonrpc": "2.0", "error": error, "id": rid}
    return {"jsonrpc": "2.0", "result": value, "id": rid}


def cmd_methods(args: Args) -> int:
    from .text import render_method, render_methods

    with open_client(args) as client:
        try:
            doc = client.call("rpc.discover")
        except RpcError as exc:
            if exc.code == -32601:
                exc.message += " (this server does not offer rpc.discover)"
            raise
    if args.json:
        print_json(doc, pretty(args.pretty))
        return EXIT_OK
    methods = doc.get("methods") if isinstance(doc, dict) else None
    methods = [m for m in methods if isinstance(m, dict)] if isinstance(methods, list) else []
    if args.method is None:
        print(visible(render_methods(methods), newlines=True))
        return EXIT_OK
    for method in methods:
        if method.get("name") == args.method:
            print(visible(render_method(method), newlines=True))
            return EXIT_OK
    print(f"error: {args.socket} has no method {args.method!r}", file=sys.stderr)
    return EXIT_RPC_ERROR


def cmd_stats(args: Args) -> int:
    """A table on a terminal (or with --table); JSON when piped, or with --json/--pretty/--compact."""
    if args.openmetrics:
        from .ops import print_openmetrics

        return print_openmetrics(args)
    targets = fan_out_targets(args)
    if targets is not None:
        return fan_out(args, targets, lambda client: client.call("rpc.stats"))
    with open_client(args) as client:
        figures = client.call("rpc.stats")
    as_json = args.json or args.pretty is not None or not (args.table or sys.stdout.isatty())
    if not as_json:
        from .text import render_stats

        table = render_stats(figures)
        if table is not None:
            print(visible(table, newlines=True), flush=True)
            return EXIT_OK
    print_json(figures, pretty(args.pretty))
    return EXIT_OK


class Terminated(KeyboardInterrupt):
    """SIGTERM while watching: stop the way Ctrl-C does."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def cmd_watch(args: Args) -> int:
    """Print each event's data, one JSON per line, until --count, Ctrl-C or SIGTERM.

    Ctrl-C (or SIGTERM) unsubscribes before exiting 130 (143): the server ends the subscription
    at once instead of when it notices the connection is gone.
    """
    import signal  # only watch needs it (its import's cost: specs/performance.md)

    from .ops import resume_params, tell_resumed, tell_where

    params = parse_params(args.params, "keywords")
    assert not isinstance(params, list)
    params = {**(params or {}), **resume_params(args)}
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread (main() called by a program): leave SIGTERM alone
        previous = None
    try:
        with open_client(args) as client, client.subscribe(args.topic, **params) as sub:
            tell_resumed(sub)
            try:
                return _print_events(sub, args.count, bool(args.pretty))
            except Terminated:
                return EXIT_TERMINATED
            except KeyboardInterrupt:
                return EXIT_INTERRUPTED
            finally:
                if args.since is not None:
                    tell_where(sub)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _print_events(events: Subscription, count: int | None, indent: bool) -> int:
    dropped = 0
    if count is not None and count <= 0:
        return EXIT_OK
    for seen, data in enumerate(events.events(timeout=None), 1):  # events may be far apart
        if events.dropped != dropped:
            lost, dropped = events.dropped - dropped, events.dropped
            print(f"jrpc-unix: {lost} events dropped (reading too slowly)", file=sys.stderr, flush=True)
        print_json(data, indent)
        if count is not None and seen >= count:
            break
    return EXIT_OK


def cmd_serve(args: Args) -> int:
    from .serve import serve_command

    return serve_command(args)


def cmd_bridge(args: Args) -> int:
    from .._client.relay import relay

    return relay(args.path)


def cmd_demo(args: Args) -> int:
    from .tour import tour  # the server, trio and threads: only the demo needs them

    return tour(timeout=args.timeout)


def cmd_shell(args: Args) -> int:
    from .shell import shell_command  # readline and threading: only the shell needs them

    with open_client(args) as client:
        return shell_command(args, client)


def cmd_completion(args: Args) -> int:
    from .complete import SCRIPTS

    sys.stdout.write(SCRIPTS[args.shell])
    return EXIT_OK


COMMANDS: dict[str, Callable[[Args], int]] = {
    "call": cmd_call,
    "notify": cmd_notify,
    "batch": cmd_batch,
    "methods": cmd_methods,
    "stats": cmd_stats,
    "watch": cmd_watch,
    "serve": cmd_serve,
    "demo": cmd_demo,
    "shell": cmd_shell,
    "completion": cmd_completion,
    "bridge": cmd_bridge,
}


def command(name: str) -> Callable[[Args], int]:
    """The function of command ``name``: one of :data:`COMMANDS`, or a settings or operations
    command, whose modules load only when one is named (a ``call`` imports neither:
    specs/performance.md)."""
    found = COMMANDS.get(name)
    if found is not None:
        return found
    from .ops import OPS_COMMANDS
    from .settings import SETTINGS_COMMANDS

    return {**SETTINGS_COMMANDS, **OPS_COMMANDS}[name]
