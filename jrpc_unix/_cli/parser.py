"""The ``jrpc-unix`` command line's argparse parser, and its conventions.

Imported only when :func:`jrpc_unix._cli.main.quick_args` cannot read the command line itself:
importing argparse and building this parser are a large share of a whole ``jrpc-unix call``
(specs/performance.md).

The conventions every subcommand follows (specs/clients.md, "Command line"):

- options go anywhere after the command, before or after the params; ``--`` ends them (a param
  that starts with ``-`` comes after it); a usage error prints the subcommand's own usage;
- SOCK may be left out when ``$JRPC_UNIX_SOCKET`` names the socket (:mod:`.target`);
- ``-v``, ``--timeout``, ``--connect-timeout`` and ``--wait`` mean the same for every client
  command (the :class:`Shared` parents);
- each subcommand's help ends with real examples.

A new subcommand is one ``shared.add(...)`` call here (with the parents it needs), plus its
entry in :data:`~.commands.COMMANDS` (a settings or operations command: in the table of
:mod:`.settings` or :mod:`.ops`); completion and the man page are generated from this parser.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from .._version import __version__
from .params import parse_timeout
from .target import default_target, looks_like_address

__all__ = ["Shared", "build_parser", "parse"]

EXIT_CODES = (
    "exit codes: 0 ok, 1 the server answered with an error, 2 usage, "
    "3 cannot connect / connection lost / timeout, 130 interrupted (Ctrl-C), "
    "143 terminated (SIGTERM, watch)."
)
#: jrpc_unix._wire.framings.NAMES, named here so the parser imports nothing (a test holds them equal).
FRAMINGS = ("newline", "unixsock", "lsp", "json-seq")
PARAMS_HELP = (
    "a JSON array/object, key=value pairs or plain words; @FILE or - (stdin) for the whole "
    "params as JSON, key=@FILE for one value read from a JSON file"
)


def _seconds(text: str) -> float:
    """``--wait``: a number of seconds, 0 or more."""
    value = parse_timeout(text)
    if value is None:
        raise argparse.ArgumentTypeError("--wait needs a finite number of seconds")
    return value


@dataclass
class Shared:
    """The parent parsers subcommands compose, and :meth:`add` to register one."""

    commands: argparse._SubParsersAction[argparse.ArgumentParser]
    common: argparse.ArgumentParser  # -v, --timeout, --connect-timeout, --wait
    sock: argparse.ArgumentParser  # common + SOCK
    fan: argparse.ArgumentParser  # common + SOCK (one target or several) + the fan-out options
    output: argparse.ArgumentParser  # --pretty / --compact
    style: argparse.ArgumentParser  # -k / -o

    def add(
        self, name: str, help: str, parents: list[argparse.ArgumentParser], examples: tuple[str, ...] = ()
    ) -> argparse.ArgumentParser:
        """Register subcommand ``name``; its help ends with ``examples`` (command lines)."""
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else None
        return self.commands.add_parser(
            name,
            help=help,
            description=help,
            parents=parents,
            epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )


def _shared(parser: argparse.ArgumentParser, targets: bool) -> Shared:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show the transport and every request and answer line on stderr",
    )
    common.add_argument(
        "--timeout",
        type=parse_timeout,
        default=30.0,
        metavar="SECONDS",
        help="give up after this long (default 30; 0 waits forever)",
    )
    common.add_argument(
        "--connect-timeout",
        type=parse_timeout,
        default=None,
        metavar="SECONDS",
        help="give up connecting after this long (default: the --timeout)",
    )
    common.add_argument(
        "--wait",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait up to this long for a socket that is not up yet (default 0: do not wait)",
    )
    sock = argparse.ArgumentParser(add_help=False, parents=[common])
    sock.add_argument(
        "socket",
        metavar="SOCK",
        help="the server's socket path, @name or ssh://[user@]host[:port]/path; may be left out "
        "when $JRPC_UNIX_SOCKET is set",
    )
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
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from .remote import fan_out_parent

    fan = fan_out_parent(common, sock=not targets)
    return Shared(commands, common, sock, fan, output, style)


def build_parser(serve: bool = True, targets: bool = False) -> argparse.ArgumentParser:
    """The parser; ``args.command`` names the command. ``serve=False`` leaves out serve's
    many options (they import the server's Limits); ``targets=True``: the fan-out commands take
    ``--targets FILE`` instead of SOCK."""
    parser = argparse.ArgumentParser(
        prog="jrpc-unix",
        description="Talk JSON-RPC 2.0 to a service on a UNIX socket, or serve one.",
        epilog=EXIT_CODES + " Options go anywhere after the command; -- ends them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    shared = _shared(parser, targets)
    sock, fan, output, style, add = shared.sock, shared.fan, shared.output, shared.style, shared.add

    sub = add(
        "call",
        "call METHOD and print its result",
        [fan, output, style],
        (
            "jrpc-unix call /run/app.sock subtract 42 23",
            "JRPC_UNIX_SOCKET=/run/app.sock jrpc-unix call config.set key=level value=debug",
            "jrpc-unix call /run/app.sock config.load @settings.json --timeout 5",
        ),
    )
    sub.add_argument("method", metavar="METHOD")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help=PARAMS_HELP)
    sub.add_argument("--raw", action="store_true", help="print the whole answer line as received")
    sub.add_argument(
        "--framing",
        choices=FRAMINGS,
        default="newline",
        help="how messages are cut on the wire (unixsock: a Go original's server; its payload is printed)",
    )

    sub = add(
        "notify",
        "send a notification (no answer); exit 1 if the server refused the connection",
        [fan, style],
        ("jrpc-unix notify /run/app.sock reload", "jrpc-unix notify @app log.rotate keep=3"),
    )
    sub.add_argument("method", metavar="METHOD")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help=PARAMS_HELP)

    sub = add(
        "batch",
        "send stdin's requests (one per line) as one batch",
        [fan, style],
        ("printf 'ping\\nsubtract 5 3\\n' | jrpc-unix batch /run/app.sock",),
    )
    sub.add_argument("--raw", action="store_true", help="print the batch answer as received")

    sub = add(
        "methods",
        "list the server's methods (rpc.discover)",
        [sock, output],
        ("jrpc-unix methods /run/app.sock", "jrpc-unix methods /run/app.sock subtract"),
    )
    sub.add_argument("method", metavar="METHOD", nargs="?", help="show this method in full")
    sub.add_argument("--json", action="store_true", help="print the OpenRPC document")

    sub = add(
        "stats",
        "the server's live figures (rpc.stats): a table on a terminal, else JSON",
        [fan, output],
        ("jrpc-unix stats /run/app.sock", "jrpc-unix stats /run/app.sock --json | jq .server"),
    )
    form = sub.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="JSON even on a terminal")
    form.add_argument("--table", action="store_true", help="a table even when piped")
    form.add_argument("--openmetrics", action="store_true", help="OpenMetrics text (rpc.metrics)")

    sub = add(
        "watch",
        "subscribe to TOPIC and print each event, one JSON per line",
        [sock, output],
        (
            "jrpc-unix watch /run/app.sock stats interval=1",
            "jrpc-unix watch /run/app.sock progress --count 5",
        ),
    )
    sub.add_argument("topic", metavar="TOPIC", help="stats, progress, or one the service declares")
    sub.add_argument("params", metavar="PARAMS", nargs="*", help="the topic's params, key=value")
    sub.add_argument("--count", type=int, metavar="N", help="stop after N events (default: never)")
    sub.add_argument("--since", type=int, metavar="SEQ", help="first the kept events after SEQ (resume)")
    sub.add_argument("--epoch", metavar="EPOCH", help="the epoch SEQ was seen in (a restart is then told)")

    from .settings import add_settings_commands

    add_settings_commands(add, sock, output, fan)

    from .ops import add_ops_commands

    add_ops_commands(add, sock, output)
    sub = add(
        "serve",
        "serve a Methods object until SIGTERM/SIGINT",
        [],
        ("jrpc-unix serve myapp.control:methods /run/myapp.sock", "jrpc-unix serve ./tools.py @tools"),
    )
    if serve:  # its many options cost imports the client commands must not pay
        from .serve import add_serve_options

        add_serve_options(sub)
    add(
        "shell",
        "an interactive session: METHOD [PARAMS] lines, history, Tab completion, .watch TOPIC",
        [sock],
        ("jrpc-unix shell /run/app.sock", "printf 'ping\\nsubtract 5 3\\n' | jrpc-unix shell /run/app.sock"),
    )
    sub = add(
        "completion",
        "print the shell completion script (methods and params come from the live socket)",
        [],
        (
            'eval "$(jrpc-unix completion bash)"   # in ~/.bashrc',
            'eval "$(jrpc-unix completion zsh)"    # in ~/.zshrc, after compinit',
            "jrpc-unix completion fish > ~/.config/fish/completions/jrpc-unix.fish",
        ),
    )
    sub.add_argument("shell", metavar="SHELL", choices=["bash", "zsh", "fish"], help="bash, zsh or fish")
    waits = argparse.ArgumentParser(add_help=False)
    waits.add_argument("--timeout", type=parse_timeout, default=30.0, metavar="SECONDS", help="default 30")
    add("demo", "start the demo service, drive it, show what happened", [waits], ("jrpc-unix demo",))
    from .remote import add_remote_commands

    add_remote_commands(add)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _first_positional(sub: argparse.ArgumentParser, words: list[str]) -> int:
    """The index of the first positional word of ``words`` (len(words) if there is none)."""
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return i + 1
        if not word.startswith("-") or word == "-" or sub._negative_number_matcher.match(word):
            return i
        action = sub._option_string_actions.get(word)
        i += 2 if action is not None and action.nargs != 0 else 1
    return i


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv`` with options anywhere after the command, ``--`` ending them, and SOCK
    taken from ``$JRPC_UNIX_SOCKET`` when left out. SystemExit as argparse's."""
    subs = _subparsers(parser)
    if not argv or argv[0] not in subs:
        return parser.parse_args(argv)  # --help, --version, or an unknown command
    sub, words = subs[argv[0]], list(argv[1:])
    positionals = [a for a in sub._actions if not a.option_strings]
    target = default_target()
    if positionals and positionals[0].dest == "socket" and target is not None:
        i = _first_positional(sub, words)
        if i >= len(words) or not looks_like_address(words[i]):
            words.insert(i, target)
    # argparse 3.11 mishandles "--" in intermixed parsing (drops a second one, misreads words
    # after it): the words after it are stood in for by NUL-prefixed tokens (no argv word can
    # hold a NUL), then put back.
    after: list[str] = []
    if "--" in words:
        cut = words.index("--")
        after = words[cut + 1 :]
        words = words[:cut] + [f"\0{n}" for n in range(len(after))]
    args = sub.parse_intermixed_args(words)
    if after:
        for action in positionals:
            value = getattr(args, action.dest, None)
            if isinstance(value, list):
                setattr(args, action.dest, [_back(v, after) for v in value])
            elif isinstance(value, str):
                setattr(args, action.dest, _back(value, after))
    args.command = argv[0]
    return args


def _back(word: str, after: list[str]) -> str:
    return after[int(word[1:])] if word.startswith("\0") else word
