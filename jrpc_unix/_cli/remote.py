"""The command line beyond one host: ``jrpc-unix bridge``, and fan-out of ``call``, ``notify``,
``batch``, ``stats``, ``settings`` and ``set`` to several targets (specs/remote.md).

A SOCK naming several targets (``a.sock,b.sock``, ``ssh://web[01-12]/run/app.sock``) or
``--targets FILE`` runs the command on each through :class:`~.._client.fleet.Fleet`. Piped, each
outcome is one NDJSON line ``{"target", "result"|"error", "ms"}`` as it completes; on a terminal,
identical answers are grouped with the targets that gave them, then a summary line. Exit status:
3 if any target was unreachable (or timed out), else 1 if any answered an error, else 0.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from .exits import EXIT_OK, EXIT_RPC_ERROR, EXIT_TRANSPORT
from .params import UsageError
from .render import json_text, say, visible

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    import argparse
    from argparse import Namespace as Args
    from typing import Any

    from .._client.blocking import Client
    from .._client.fleet import Outcome

    Add = Callable[[str, str, list[argparse.ArgumentParser]], argparse.ArgumentParser]
else:
    Args = object  # (annotations only)

__all__ = ["add_remote_commands", "fan_out", "fan_out_parent", "fan_out_targets", "names_targets"]


def _positive(text: str) -> int:
    import argparse  # only the parser calls this; `call SOCK METHOD` is read without argparse

    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def fan_out_parent(common: argparse.ArgumentParser, sock: bool) -> argparse.ArgumentParser:
    """SOCK (one target or several) and the fan-out options of call/notify/batch/stats, over
    the shared options ``common``; no SOCK when the command line has ``--targets``
    (:func:`names_targets`)."""
    import argparse

    parent = argparse.ArgumentParser(add_help=False, parents=[common])
    if sock:
        parent.add_argument(
            "socket",
            metavar="SOCK",
            help="the server's socket path, @name or ssh://[user@]host[:port]/path; several: "
            "a,b or node sets like ssh://web[01-12]/run/app.sock; may be left out when "
            "$JRPC_UNIX_SOCKET is set",
        )
    fan = parent.add_argument_group("fan-out (several targets)")
    fan.add_argument("--targets", metavar="FILE", help="the targets, one a line (# comments); no SOCK then")
    fan.add_argument("--parallel", type=_positive, default=16, metavar="N", help="at most N at once (16)")
    fan.add_argument("--max-fail", type=_positive, metavar="N", help="start no more targets once N failed")
    fan.add_argument(
        "--serial", type=_positive, metavar="N", help="batches of N targets; none after a failed batch"
    )
    return parent


def add_remote_commands(add: Add) -> None:
    sub = add("bridge", "relay stdin/stdout to the socket PATH (the remote side of ssh://)", [])
    sub.add_argument("path", metavar="PATH", help="the socket (an authorized_keys forced command may fix it)")


def names_targets(argv: list[str]) -> bool:
    """Whether the command line gives ``--targets`` (the parser then wants no SOCK)."""
    return any(word == "--targets" or word.startswith("--targets=") for word in argv)


def fan_out_targets(args: Args) -> list[str] | None:
    """The targets when the command fans out, else None (one target: ``args.socket``)."""
    file = args.targets
    if file is None and not any(mark in args.socket for mark in ",["):
        return None  # one target: the common case pays for no import
    from .._client.fleet import expand_targets, read_targets

    try:
        if file is not None:
            return read_targets(file)
        targets = expand_targets(args.socket)
    except OSError as exc:
        raise UsageError(f"--targets {file}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return targets if file is not None or len(targets) > 1 else None


def fan_out(args: Args, targets: list[str], op: Callable[[Client], Any]) -> int:
    """Run ``op`` on every target; print the outcomes; the exit status."""
    from .._client.fleet import Fleet

    try:
        fleet = Fleet(
            targets,
            parallel=args.parallel,
            timeout=args.timeout,
            max_fail=args.max_fail,
            serial=args.serial,
            log=say if args.verbose else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    start = time.perf_counter()
    grouped = sys.stdout.isatty()
    outcomes: list[Outcome] = []
    for outcome in fleet.run(op):
        outcomes.append(outcome)
        if not grouped:
            print(json_text(outcome.to_json()), flush=True)
    if grouped:
        _print_groups(outcomes)
    failed = [o for o in outcomes if not o.ok]
    unreachable = [o for o in failed if o.unreachable]
    skipped = fleet.skipped
    summary = (
        f"{len(targets)} targets: {len(outcomes) - len(failed)} ok, {len(failed) - len(unreachable)} "
        f"answered an error, {len(unreachable)} unreachable"
        + (f", {len(skipped)} not started (--max-fail/--serial)" if skipped else "")
        + f"; {(time.perf_counter() - start) * 1000:.0f} ms"
    )
    if grouped:
        print(visible(summary), flush=True)
    elif skipped or failed:
        say(summary)
    return EXIT_TRANSPORT if unreachable else EXIT_RPC_ERROR if failed else EXIT_OK


def _print_groups(outcomes: list[Outcome]) -> None:
    """clush -b style: each distinct answer once, under the targets that gave it."""
    groups: dict[str, list[str]] = {}
    for outcome in outcomes:
        line = outcome.to_json()
        key = json_text(line["result"], True) if outcome.ok else _error_text(line["error"])
        groups.setdefault(key, []).append(outcome.target)
    for key, members in groups.items():
        title = f"{','.join(sorted(members))} ({len(members)})"
        rule = "-" * min(len(title), 78)
        print(visible(f"{rule}\n{title}\n{rule}", newlines=True))
        print(visible(key, newlines=True))


def _error_text(error: dict[str, Any]) -> str:
    if "code" in error:
        text = f"error [{error['code']}] {error['message']}"
        return text + (f"\n  data: {json_text(error['data'])}" if "data" in error else "")
    return f"unreachable: {error['message']}"
