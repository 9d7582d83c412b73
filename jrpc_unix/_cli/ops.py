"""The operator's commands: ``info``, ``health``, ``log``, ``inflight``, ``connections``,
``slowlog``, ``audit`` and ``stats --openmetrics`` (specs/operations.md).

Each calls one ``rpc.*`` built-in and prints, like ``stats``, a table on a terminal (or with
``--table``) and JSON when piped (or with ``--json``). ``health`` exits 0 while the service is
serving and 1 otherwise, so a script or a container's health check can use it as is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .connecting import open_client
from .exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_RPC_ERROR
from .params import UsageError
from .render import json_text, pretty, print_json, visible

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:  # argparse only when the command line needs it (see .main)
    import argparse
    from argparse import Namespace as Args
    from typing import Any

    from .._client.blocking import Subscription

    Add = Callable[[str, str, list[argparse.ArgumentParser]], argparse.ArgumentParser]
else:
    Args = object  # (annotations only)

__all__ = ["OPS_COMMANDS", "add_ops_commands"]


def add_ops_commands(add: Add, sock: argparse.ArgumentParser, output: argparse.ArgumentParser) -> None:
    """Register the operator's commands on the shared parser (``add`` makes a subcommand)."""
    import argparse

    form = argparse.ArgumentParser(add_help=False, parents=[sock, output])
    how = form.add_mutually_exclusive_group()
    how.add_argument("--json", action="store_true", help="JSON even on a terminal")
    how.add_argument("--table", action="store_true", help="a table even when piped")
    add("info", "the service's name, version, pid, start time and addresses (rpc.info)", [form])
    sub = add("health", "serving? exit 0 if so, 1 if not (rpc.health)", [form])
    sub.add_argument("--watch", action="store_true", help="print each change until Ctrl-C")
    sub = add("log", "show log levels, or set LOGGER to LEVEL (rpc.log.*)", [form])
    sub.add_argument("logger", metavar="LOGGER", nargs="?", help='a logger name ("root" for the root)')
    sub.add_argument(
        "level", metavar="LEVEL", nargs="?", help="DEBUG, INFO, WARNING, ERROR, CRITICAL, NOTSET"
    )
    sub.add_argument("--ttl", type=float, metavar="SECONDS", help="go back to the old level after this long")
    add("inflight", "the calls running now, on every connection (rpc.inflight)", [form])
    sub = add("connections", "who is connected (rpc.connections)", [form])
    sub.add_argument("--kill", type=int, metavar="ID", help="disconnect connection ID (rpc.disconnect)")
    sub = add("audit", "the newest audit records: operate/admin calls and denials (rpc.audit)", [form])
    sub.add_argument("--limit", type=int, default=50, metavar="N", help="at most N records (default 50)")
    sub = add("slowlog", "the newest calls over the slow-call threshold (rpc.slowlog)", [form])
    sub.add_argument("--limit", type=int, default=20, metavar="N", help="at most N calls (default 20)")


def _as_json(args: Args) -> bool:
    return bool(args.json or args.pretty is not None or not (args.table or sys.stdout.isatty()))


def _show(args: Args, value: Any, table: Callable[[Any], str]) -> None:
    if _as_json(args):
        print_json(value, pretty(args.pretty))
    else:
        print(visible(table(value), newlines=True), flush=True)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, list):
        return ",".join(map(_cell, value)) or "-"
    if isinstance(value, dict) and "pid" in value:  # a peer
        return f"{_cell(value.get('exe'))}[{value.get('pid')}] uid {value.get('uid')}"
    return json_text(value)


def table(rows: Any, columns: Sequence[tuple[str, str]]) -> str:
    """``rows`` (a list of objects) as aligned columns: (key, heading) each."""
    if not isinstance(rows, list) or not rows:
        return "(none)"
    cells = [[h for _, h in columns]]
    cells += [[_cell(r.get(k)) if isinstance(r, dict) else "?" for k, _ in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _pairs(value: Any) -> str:
    if not isinstance(value, dict):
        return json_text(value)
    return "\n".join(f"{k:<16} {_cell(v)}" for k, v in value.items())


def cmd_info(args: Args) -> int:
    with open_client(args) as client:
        _show(args, client.call("rpc.info"), _pairs)
    return EXIT_OK


def _health_text(health: Any) -> str:
    if not isinstance(health, dict):
        return json_text(health)
    checks = health.get("checks")
    items = checks.items() if isinstance(checks, dict) else []
    rows = [{"check": name, **c} for name, c in items if isinstance(c, dict)]
    text = f"status: {_cell(health.get('status'))}"
    return text + (
        "\n\n" + table(rows, [("check", "check"), ("status", "status"), ("detail", "detail")]) if rows else ""
    )


def _health_code(health: Any) -> int:
    return EXIT_OK if isinstance(health, dict) and health.get("status") == "serving" else EXIT_RPC_ERROR


def cmd_health(args: Args) -> int:
    """Exit 0 if serving, 1 otherwise; with --watch, print each change (exit: the last one's)."""
    with open_client(args) as client:
        if not args.watch:
            health = client.call("rpc.health")
            _show(args, health, _health_text)
            return _health_code(health)
        code = EXIT_RPC_ERROR
        try:
            with client.subscribe("health") as sub:
                for health in sub.events(timeout=None):
                    _show(args, health, _health_text)
                    code = _health_code(health)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        return code


def cmd_log(args: Args) -> int:
    columns = [("logger", "logger"), ("level", "level"), ("effective", "effective"), ("ttl_s", "ttl s")]
    with open_client(args) as client:
        if args.logger is None:
            _show(args, client.call("rpc.log.levels"), lambda rows: table(rows, columns))
            return EXIT_OK
        if args.level is None:
            raise UsageError("give a LEVEL to set (DEBUG, INFO, WARNING, ERROR, CRITICAL, NOTSET)")
        params = {"logger": args.logger, "level": args.level, "ttl": args.ttl}
        _show(args, client.call("rpc.log.set", **params), lambda row: table([row], columns))
    return EXIT_OK


def cmd_inflight(args: Args) -> int:
    columns = [("connection", "conn"), ("id", "id"), ("method", "method"), ("age_s", "age s")]
    columns += [("last_progress_s", "progress s ago"), ("peer", "peer")]
    with open_client(args) as client:
        _show(args, client.call("rpc.inflight"), lambda rows: table(rows, columns))
    return EXIT_OK


def cmd_connections(args: Args) -> int:
    with open_client(args) as client:
        if args.kill is not None:
            gone = client.call("rpc.disconnect", id=args.kill)
            print_json(gone, False)
            return EXIT_OK if gone else EXIT_RPC_ERROR
        columns = [
            ("id", "id"),
            ("peer", "peer"),
            ("access", "access"),
            ("age_s", "age s"),
            ("idle_s", "idle s"),
        ]
        columns += [("in_flight", "calls"), ("subscriptions", "topics"), ("pending_output_bytes", "output B")]
        _show(args, client.call("rpc.connections"), lambda rows: table(rows, columns))
    return EXIT_OK


def cmd_slowlog(args: Args) -> int:
    columns = [("time", "time"), ("method", "method"), ("duration_ms", "ms"), ("connection", "conn")]
    columns.append(("peer", "peer"))
    with open_client(args) as client:
        log = client.call("rpc.slowlog", limit=args.limit)

    def text(value: Any) -> str:
        calls = value.get("calls") if isinstance(value, dict) else value
        return f"threshold: {_cell(value.get('threshold_ms'))} ms\n\n" + table(calls, columns)

    _show(args, log, text)
    return EXIT_OK


def cmd_audit(args: Args) -> int:
    columns = [("time", "time"), ("peer", "peer"), ("method", "method"), ("outcome", "outcome")]
    columns += [("duration_ms", "ms"), ("params", "params")]
    with open_client(args) as client:
        _show(args, client.call("rpc.audit", limit=args.limit), lambda rows: table(rows, columns))
    return EXIT_OK


def resume_params(args: Args) -> dict[str, Any]:
    """``watch --since SEQ [--epoch EPOCH]`` as ``rpc.subscribe`` params."""
    if args.since is None:
        if args.epoch is not None:
            raise UsageError("--epoch goes with --since")
        return {}
    return {"since": args.since} if args.epoch is None else {"since": args.since, "epoch": args.epoch}


def tell_resumed(sub: Subscription) -> None:
    """On stderr: what a resumed watch could not replay."""
    resumed = sub.resumed or {}
    if resumed.get("restarted"):
        print("jrpc-unix: the server restarted since; replaying what it kept", file=sys.stderr, flush=True)
    elif resumed.get("truncated"):
        oldest = resumed.get("oldest")
        print(
            f"jrpc-unix: events before seq {oldest} are gone; replaying from there",
            file=sys.stderr,
            flush=True,
        )


def tell_where(sub: Subscription) -> None:
    """On stderr, as the watch ends: how to resume after the last event received."""
    if sub.seq is not None:
        print(
            f"jrpc-unix: last seq {sub.seq}; resume with --since {sub.seq} --epoch {sub.epoch}",
            file=sys.stderr,
        )


def print_openmetrics(args: Args) -> int:
    """``stats --openmetrics``: the text as the server renders it, for a textfile collector."""
    with open_client(args) as client:
        text = client.call("rpc.metrics")
    if not isinstance(text, str):
        raise UsageError("the server's rpc.metrics did not answer text")
    sys.stdout.write(visible(text, newlines=True))
    sys.stdout.flush()
    return EXIT_OK


OPS_COMMANDS: dict[str, Callable[[Args], int]] = {
    "info": cmd_info,
    "health": cmd_health,
    "log": cmd_log,
    "inflight": cmd_inflight,
    "connections": cmd_connections,
    "slowlog": cmd_slowlog,
    "audit": cmd_audit,
}
