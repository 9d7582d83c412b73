"""``jrpc-unix``: call, notify, batch, list methods, stats, watch, serve, or take the guided demo.

Habits of ``lightning-cli`` and ``varlinkctl``: params as JSON, ``key=value`` or plain words;
results as JSON on stdout (pretty on a terminal); errors on stderr as ``error [code] message``;
exit codes that tell a script what went wrong. The commands are :mod:`.commands`;
the exit codes :mod:`.exits`.

Shell scripts call it in loops, so start-up counts (``jrpc-unix call SOCK ping`` should cost
little more than starting Python): the client commands import neither trio, jsonrpcserver nor
orjson (``serve`` and ``demo`` import what they need when run); the common ``call``/``notify``
command lines are read without argparse (:func:`quick_args`); the cyclic GC is paused while
the commands are imported (imports make only long-lived objects, so its passes find nothing);
and a client command skips the interpreter's teardown (:func:`run`). What each of these saves,
and how to measure it again: specs/performance.md.
"""

from __future__ import annotations

import gc
import os
import sys
from types import SimpleNamespace

from .exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_RPC_ERROR, EXIT_TERMINATED, EXIT_TRANSPORT, EXIT_USAGE
from .target import default_target, looks_like_address

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from argparse import Namespace as Args
else:
    Args = SimpleNamespace

__all__ = ["main", "quick_args", "run"]

#: Commands that run threads, servers or logging: they exit the ordinary way.
_FULL_EXIT = ("serve", "demo")


def _positional(word: str) -> bool:
    """Whether argparse reads ``word`` as a positional argument of ``call``/``notify``: it does
    not start with ``-``, or it is ``-`` itself, or a negative number (argparse's own rule)."""
    if not word.startswith("-") or word == "-":
        return True
    whole, dot, fraction = word[1:].partition(".")
    if not dot:
        return whole.isdecimal()
    return (not whole or whole.isdecimal()) and fraction.isdecimal()


def quick_args(argv: list[str]) -> Args | None:
    """``call``/``notify [SOCK] METHOD [PARAMS...]`` with no options, read the way the parser
    would (tests hold the two to the same result); None for anything else, which argparse reads."""
    if len(argv) < 2 or argv[0] not in ("call", "notify") or not all(map(_positional, argv[1:])):
        return None
    target = default_target()
    if target is not None and not looks_like_address(argv[1]):
        argv = [argv[0], target, *argv[1:]]
    if len(argv) < 3:
        return None
    args = SimpleNamespace(command=argv[0], timeout=30.0, socket=argv[1], style="auto")
    args.verbose, args.connect_timeout, args.wait = 0, None, 0.0
    args.targets, args.parallel, args.max_fail, args.serial = None, 16, None, None  # no fan-out options
    args.method, args.params = argv[2], argv[3:]
    if argv[0] == "call":
        args.pretty, args.raw, args.framing = None, False, "newline"
    return args  # type: ignore[return-value]  # argparse's Namespace is just as loose


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit code (never raises for an expected failure)."""
    argv = sys.argv[1:] if argv is None else argv
    collecting = gc.isenabled()
    gc.disable()
    try:
        from .._errors import JrpcUnixError, RpcError
        from .commands import Terminated, command
        from .params import UsageError
        from .render import print_rpc_error, visible
    finally:
        if collecting:
            gc.enable()
    if argv[:1] == ["__complete"]:  # what the completion scripts run on each Tab
        from .complete import complete_main

        return complete_main(argv[1:])
    args = quick_args(argv)
    if args is None:
        from .parser import build_parser, parse
        from .remote import names_targets

        parser = build_parser(serve=bool(argv) and argv[0] == "serve", targets=names_targets(argv))
        try:
            args = parse(parser, argv)
        except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
            return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return command(args.command)(args)
    except UsageError as exc:
        print(f"jrpc-unix {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RpcError as exc:
        print_rpc_error(exc)
        return EXIT_RPC_ERROR
    except JrpcUnixError as exc:  # cannot connect or listen, connection lost, timeout, protocol
        print(f"jrpc-unix: {visible(str(exc))}", file=sys.stderr)  # it may quote the server
        return EXIT_TRANSPORT
    except Terminated:  # a second SIGTERM while watch unsubscribes
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def run() -> None:
    """The console script: ``sys.exit(main())``, quiet when stdout is a closed pipe.

    A client command ends with ``os._exit`` once its output is flushed: tearing down the
    interpreter's modules is a measurable share of a whole call (specs/performance.md), and
    nothing of a client command needs it (no threads, no atexit handlers, every stream flushed
    here).
    """
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:  # `jrpc-unix ... | head`: the reader left; that is not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = EXIT_OK
    if sys.argv[1:2] and sys.argv[1] in _FULL_EXIT:
        sys.exit(code)
    try:  # (not contextlib.suppress: its import is a share of this start)  # noqa: SIM105
        sys.stderr.flush()
    except OSError:  # stderr is a closed pipe: nothing more can be said
        pass
    os._exit(code)
