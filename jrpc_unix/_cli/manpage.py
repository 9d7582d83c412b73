"""The man page, jrpc-unix(1), generated from the argparse parser: it cannot lag behind it.

``python -m jrpc_unix._cli.manpage > jrpc_unix/_cli/jrpc-unix.1`` writes the shipped copy;
``tests/cli/test_cli_manpage.py`` fails when that copy is not what the parser generates now.
The package installs it as package data, and as ``share/man/man1/jrpc-unix.1`` of the
environment (``man jrpc-unix`` finds it when that ``share/man`` is on the MANPATH, as a
virtualenv's is for ``man`` run from its ``bin``). No date in it, so it is reproducible.
"""

from __future__ import annotations

import argparse

from .._version import __version__
from .parser import EXIT_CODES, build_parser

__all__ = ["manpage"]


def _roff(text: str) -> str:
    """Text escaped for roff: backslashes, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.splitlines())


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(prog=parser.prog, width=78)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def _options(parser: argparse.ArgumentParser) -> list[str]:
    out: list[str] = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction):
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else f" {action.metavar or action.dest.upper()}"
            name = ", ".join(f"{o}{metavar}" for o in action.option_strings)
        else:
            name = str(action.metavar or action.dest)
        help_text = action.help or ""
        if "%(default)" in help_text:
            help_text = help_text % {"default": action.default}
        out += [".TP", f"\\fB{_roff(name)}\\fR", _roff(help_text)]
    return out


def manpage() -> str:
    """jrpc-unix(1) as roff text."""
    parser = build_parser()
    lines = [
        f'.TH JRPC\\-UNIX 1 "" "jrpc-unix {__version__}" "User Commands"',
        ".SH NAME",
        "jrpc\\-unix \\- " + _roff(parser.description or ""),
        ".SH SYNOPSIS",
        "\\fBjrpc\\-unix\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR] [\\fIARGS\\fR...] "
        "[\\fB\\-\\-\\fR \\fIPARAMS\\fR...]",
        ".SH DESCRIPTION",
        _roff(
            "Options go anywhere after the command; -- ends them. SOCK may be left out when "
            "JRPC_UNIX_SOCKET names the socket. PARAMS are a JSON array or object, key=value "
            "pairs or plain words; @FILE or - (stdin) gives the whole params as JSON, "
            "key=@FILE one value. The full reference is specs/clients.md."
        ),
        ".SH COMMANDS",
    ]
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        for name, sub in action.choices.items():
            lines += [".SS " + _roff(name), ".nf", _roff(_usage(sub)), ".fi", _roff(sub.description or "")]
            lines += _options(sub)
            if sub.epilog:
                lines += [".PP", ".nf", _roff(sub.epilog), ".fi"]
    lines += [
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBJRPC_UNIX_SOCKET\\fR",
        _roff("The socket of a client command that leaves SOCK out; a SOCK argument wins."),
        ".SH EXIT STATUS",
        _roff(EXIT_CODES),
        ".SH SEE ALSO",
        "socat(1)",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(manpage(), end="")
