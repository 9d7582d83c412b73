"""``jrpc-unix settings`` / ``set`` / ``revert``: a service's typed settings (specs/settings.md).

``settings SOCK`` shows name, value, default and source (a table on a terminal, JSON when
piped); ``--diff``, ``--log``, ``--describe`` print those methods' answers. ``set SOCK
name=value...`` changes them all or none (values are JSON, else strings); an invalid value exits
1 with every reason, one per line. ``settings`` and ``set`` fan out to several targets like
``call`` (:mod:`.remote`; specs/remote.md): each target's answer is one NDJSON line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from .._errors import RpcError
from .connecting import open_client
from .exits import EXIT_OK, EXIT_RPC_ERROR
from .params import UsageError, _is_pair, _word
from .remote import fan_out, fan_out_targets
from .render import json_text, pretty, print_json, print_rpc_error, visible

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:  # (argparse at run time only when the parser is built: start-up counts)
    import argparse
    from argparse import Namespace as Args
    from typing import Any

    from .._client.blocking import Client
else:
    Args = object  # (annotations only)

__all__ = ["SETTINGS_COMMANDS", "add_settings_commands"]


def add_settings_commands(
    add: Callable[[str, str, list[argparse.ArgumentParser]], argparse.ArgumentParser],
    sock: argparse.ArgumentParser,
    output: argparse.ArgumentParser,
    targets: argparse.ArgumentParser,
) -> None:
    """Register ``settings``, ``set`` and ``revert`` with the parser's ``add``; the first two take
    ``targets`` (SOCK as one target or several, and the fan-out options)."""
    sub = add("settings", "the service's settings: name, value, default, source", [targets, output])
    which = sub.add_mutually_exclusive_group()
    which.add_argument("--diff", action="store_true", help="what differs from the defaults, and where from")
    which.add_argument("--log", action="store_true", help="the latest changes, newest first")
    which.add_argument("--describe", action="store_true", help="each setting's schema, access and flags")
    sub.add_argument(
        "--limit", type=int, default=20, metavar="N", help="--log: at most N changes (default 20)"
    )

    sub = add("set", "change settings, all or none: NAME=VALUE...", [targets, output])
    sub.add_argument("pairs", metavar="NAME=VALUE", nargs="+", help="a value is JSON, else a string")
    sub.add_argument("--dry-run", action="store_true", help="check and show the changes; change nothing")
    sub.add_argument("--persist", action="store_true", help="also write them to the settings file")
    sub.add_argument("--expect-version", type=int, metavar="N", help="only if the settings are at version N")

    sub = add("revert", "restore the settings as they were right after VERSION", [sock, output])
    sub.add_argument("version", type=int, metavar="VERSION")
    sub.add_argument("--persist", action="store_true", help="also write them to the settings file")


def _table(rows: list[dict[str, Any]]) -> str:
    cells = [["NAME", "VALUE", "DEFAULT", "SOURCE"]]
    cells += [[r["name"], json_text(r["value"]), json_text(r["default"]), r["source"]] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def _settings_rows(client: Client) -> list[dict[str, Any]]:
    """name, value, default and source of each setting."""
    described = client.call("settings.describe")
    diff = {d["name"]: d for d in client.call("settings.diff")}
    return [
        {
            "name": d["name"],
            "value": d["value"],
            "default": d["default"],
            "source": diff[d["name"]].get("source", "default") if d["name"] in diff else "default",
        }
        for d in described
    ]


def cmd_settings(args: Args) -> int:
    def ask(client: Client) -> Any:
        if args.log:
            return client.call("settings.log", limit=args.limit)
        if args.diff or args.describe:
            return client.call("settings.diff" if args.diff else "settings.describe")
        return _settings_rows(client)

    targets = fan_out_targets(args)
    if targets is not None:
        return fan_out(args, targets, ask)
    with open_client(args) as client:
        rows = ask(client)
    if args.diff or args.log or args.describe:
        print_json(rows, pretty(args.pretty))
        return EXIT_OK
    if args.pretty is None and sys.stdout.isatty():
        print(visible(_table(rows), newlines=True), flush=True)
    else:
        print_json(rows, pretty(args.pretty))
    return EXIT_OK


def _reasons(exc: RpcError) -> int:
    """An invalid-values error: the error line, then each reason on its own line."""
    if exc.code == -32602 and isinstance(exc.data, list):
        print(f"error [{exc.code}] {visible(exc.message)}", file=sys.stderr)
        for problem in exc.data:
            if isinstance(problem, dict):
                print(
                    f"  {visible(str(problem.get('name')))}: {visible(str(problem.get('reason')))}",
                    file=sys.stderr,
                )
        return EXIT_RPC_ERROR
    print_rpc_error(exc)
    return EXIT_RPC_ERROR


def cmd_set(args: Args) -> int:
    targets = fan_out_targets(args)
    values: dict[str, Any] = {}
    for pair in args.pairs:
        if not _is_pair(pair):
            raise UsageError(f"{pair!r} is not NAME=VALUE")
        name, _, text = pair.partition("=")
        values[name] = _word(text)
    params: dict[str, Any] = {"values": values, "dry_run": args.dry_run, "persist": args.persist}
    if args.expect_version is not None:
        params["expected_version"] = args.expect_version
    if targets is not None:  # an invalid value is that target's error answer, reasons in its data
        return fan_out(args, targets, lambda client: client.call("settings.set", **params))
    with open_client(args) as client:
        try:
            result = client.call("settings.set", **params)
        except RpcError as exc:
            return _reasons(exc)
    print_json(result, pretty(args.pretty))
    return EXIT_OK


def cmd_revert(args: Args) -> int:
    with open_client(args) as client:
        result = client.call("settings.revert", version=args.version, persist=args.persist)
    print_json(result, pretty(args.pretty))
    return EXIT_OK


SETTINGS_COMMANDS: dict[str, Callable[[Args], int]] = {
    "settings": cmd_settings,
    "set": cmd_set,
    "revert": cmd_revert,
}
