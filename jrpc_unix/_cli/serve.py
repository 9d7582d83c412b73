"""``jrpc-unix serve MODULE:OBJECT SOCK``: serve any importable methods object from the shell.

Every field of :class:`~jrpc_unix.Limits` is an option (``--max-in-flight 8``), generated from
the dataclass so the command line can never lag behind the server. trio and the server are
imported only when the command runs, so the client commands stay fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .._service.access import Access, Policy
from .._service.limits import Limits
from .._service.methods import Methods
from .exits import EXIT_OK
from .params import UsageError

__all__ = ["add_serve_options", "load_target", "serve_command"]


def _limit_type(annotation: str) -> Any:
    number = int if annotation.startswith("int") else float
    nullable = "None" in annotation

    def parse(text: str) -> Any:
        if nullable and text.lower() == "none":
            return None
        try:
            return number(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if number is int else 'a number'}{' or none' if nullable else ''}"
            ) from None

    return parse


def _octal(text: str) -> int:
    try:
        return int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="MODULE:OBJECT",
        help="a Methods object (or name -> function mapping), e.g. myapp.control:methods "
        "or path/to/file.py:methods; OBJECT defaults to 'methods'",
    )
    parser.add_argument("socket", metavar="SOCK", help="socket path, @name (abstract) or systemd[:NAME]")
    parser.add_argument(
        "--mode",
        choices=["concurrent", "serial"],
        default="concurrent",
        help="concurrent calls per connection (default), or one message at a time",
    )
    parser.add_argument(
        "--socket-mode",
        type=_octal,
        default=0o600,
        metavar="OCTAL",
        help="the socket file's permissions (default 600)",
    )
    parser.add_argument("--socket-group", metavar="GROUP", help="the socket file's group (name or gid)")
    parser.add_argument(
        "--topic",
        action="append",
        default=[],
        metavar="NAME[=DESCRIPTION]",
        help="declare a topic the methods publish to (repeatable)",
    )
    parser.add_argument(
        "--listen",
        action="append",
        default=[],
        type=_listen,
        metavar="PATH[,mode=OCTAL][,group=G][,ceiling=LEVEL]",
        help="listen on this address too, e.g. /run/app/ro.sock,mode=0666,ceiling=read (repeatable)",
    )
    parser.add_argument("--name", help="the service's name (rpc.info, rpc.discover)")
    parser.add_argument("--service-version", metavar="VERSION", help="the service's version (rpc.info)")
    parser.add_argument(
        "--no-discover",
        dest="discover",
        action="store_false",
        help="do not answer rpc.discover (hide the API)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"], help="default info"
    )
    access = parser.add_argument_group(
        "who may connect, and at what level (see jrpc_unix.Policy; an @name address needs one)"
    )
    access.add_argument("--allow-user", action="append", metavar="USER", help="admit USER (repeatable)")
    access.add_argument("--allow-group", action="append", metavar="GROUP", help="admit GROUP (repeatable)")
    levels = "read, operate or admin"
    access.add_argument(
        "--grant-user", action="append", default=[], metavar="USER=LEVEL", help=f"USER's level: {levels}"
    )
    access.add_argument(
        "--grant-group", action="append", default=[], metavar="GROUP=LEVEL", help=f"GROUP's level: {levels}"
    )
    access.add_argument(
        "--default-access",
        choices=["read", "operate", "admin"],
        help="the level of every other admitted caller (default read)",
    )
    limits = parser.add_argument_group("limits (see jrpc_unix.Limits)")
    defaults = Limits()
    for f in fields(Limits):
        limits.add_argument(
            f"--{f.name.replace('_', '-')}",
            dest=f"limit_{f.name}",
            metavar="N",
            type=_limit_type(str(f.type)),
            default=argparse.SUPPRESS,
            help=f"default {getattr(defaults, f.name)}",
        )


def _listen(text: str) -> Any:
    from .._server.sockets import parse_listen

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class TargetError(Exception):
    """MODULE:OBJECT cannot be loaded."""


def load_target(spec: str) -> Any:
    """Import ``module:attr.path`` (or ``file.py:attr``) and return the object."""
    module_name, _, attr = spec.partition(":")
    attr = attr or "methods"
    if not module_name:
        raise TargetError(f"{spec!r}: expected MODULE:OBJECT")
    if module_name.endswith(".py") or os.sep in module_name:
        path = os.path.abspath(module_name)
        if not os.path.isfile(path):
            raise TargetError(f"no such file: {module_name}")
        loader_spec = importlib.util.spec_from_file_location(
            os.path.splitext(os.path.basename(path))[0], path
        )
        if loader_spec is None or loader_spec.loader is None:
            raise TargetError(f"cannot load {module_name} as a Python module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.path.insert(0, os.path.dirname(path))
        try:
            loader_spec.loader.exec_module(module)
        except Exception as exc:  # the application's own error: one line, not its traceback
            raise TargetError(f"cannot load {module_name}: {_why(exc)}") from None
    else:
        if "" not in sys.path and os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # like `python -m`: modules in the current directory
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and module_name.startswith(exc.name):
                raise TargetError(f"cannot import {module_name!r}: no module named {exc.name!r}") from None
            raise TargetError(f"cannot import {module_name!r}: {_why(exc)}") from None
        except Exception as exc:
            raise TargetError(f"cannot import {module_name!r}: {_why(exc)}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise TargetError(f"{module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, Mapping):
        raise TargetError(f"{spec} is a {type(obj).__name__}, not a Methods object or a mapping")
    try:
        return Methods.coerce(obj)
    except (TypeError, ValueError) as exc:  # a value that is not callable, a reserved name...
        raise TargetError(f"{spec}: {exc}") from None


def _why(exc: Exception) -> str:
    """``SyntaxError: invalid syntax (app.py, line 3)``: what went wrong, in one line."""
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _who(name: str) -> str | int:
    return int(name) if name.isdigit() else name


def _grants(pairs: list[str], option: str) -> dict[str | int, Access]:
    grants: dict[str | int, Access] = {}
    for pair in pairs:
        who, _, level = pair.partition("=")
        if not who or level.upper() not in Access.__members__:
            raise UsageError(f"{option} {pair!r}: expected NAME=LEVEL, LEVEL one of read, operate, admin")
        grants[_who(who)] = Access[level.upper()]
    return grants


def policy_of(args: argparse.Namespace) -> Policy | None:
    """The Policy the access options describe; None when none was given."""
    given = (args.allow_user, args.allow_group, args.grant_user, args.grant_group, args.default_access)
    if not any(given):
        return None
    try:
        return Policy(
            allow_users=None if args.allow_user is None else [_who(u) for u in args.allow_user],
            allow_groups=None if args.allow_group is None else [_who(g) for g in args.allow_group],
            grant_users=_grants(args.grant_user, "--grant-user"),
            grant_groups=_grants(args.grant_group, "--grant-group"),
            default=Access[(args.default_access or "read").upper()],
        )
    except ValueError as exc:  # an unknown user or group name
        raise UsageError(str(exc)) from None


def serve_command(args: argparse.Namespace) -> int:
    from .._server.logqueue import default_logging
    from .._server.server import run_or_raise as run

    try:
        methods = load_target(args.target)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    names = [f.name for f in fields(Limits) if hasattr(args, f"limit_{f.name}")]  # only those given
    given = {name: getattr(args, f"limit_{name}") for name in names}
    try:
        limits = Limits(**given)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    default_logging(args.log_level.upper())
    options: dict[str, Any] = {"limits": limits, "mode": args.mode, "socket_mode": args.socket_mode}
    if args.socket_group is not None:
        options["socket_group"] = int(args.socket_group) if args.socket_group.isdigit() else args.socket_group
    if args.topic:
        options["topics"] = dict(t.partition("=")[::2] for t in args.topic)
    if not args.discover:
        options["discover"] = False
    policy = policy_of(args)
    if policy is not None:
        options["policy"] = policy
    elif args.socket.startswith("@"):
        raise UsageError(
            f"{args.socket} is an abstract address: it has no file permissions, so say who may "
            "connect (--allow-user USER, --allow-group GROUP)"
        )
    options.update(listen=args.listen, name=args.name, version=args.service_version)
    try:  # a setup failure (ServerSetupError) reaches main() as itself: run() unwraps the group
        run(args.socket, methods, **options)
    except ValueError as exc:  # a bad option value the server refused (unknown group, ...)
        raise UsageError(str(exc)) from None
    return EXIT_OK
