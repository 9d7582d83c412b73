"""Shell completion: ``jrpc-unix completion bash|zsh|fish`` prints a script; the script asks
``jrpc-unix __complete SHELL -- WORDS...`` for the candidates of the word being typed.

Everything is read from the argparse parser (subcommands, options, choices, which positional
comes next), so a new subcommand completes with no change here. Method names, parameter names
(``key=``) and topics come from the live socket's ``rpc.discover`` / ``rpc.topics`` (like
redis-cli's hints from ``COMMAND DOCS``), cached for :data:`CACHE_SECONDS` per socket in the
user's cache directory, so pressing Tab twice does not ask the server twice.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import shlex
import time
from typing import Any

from .target import default_target, looks_like_address

__all__ = ["SCRIPTS", "candidates", "complete_main"]

#: How long a socket's method and topic names are reused, in seconds.
CACHE_SECONDS = 10.0
#: How long completion waits for a server (a Tab press must never hang).
ASK_TIMEOUT = 1.0

SCRIPTS = {
    "bash": r"""# jrpc-unix bash completion: eval "$(jrpc-unix completion bash)"
_jrpc_unix() {
    local IFS=$'\n'
    COMPREPLY=($(jrpc-unix __complete bash -- "${COMP_LINE:0:COMP_POINT}" 2>/dev/null))
    if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *[=/] ]]; then
        compopt -o nospace 2>/dev/null
    fi
}
complete -o default -F _jrpc_unix jrpc-unix
""",
    "zsh": r"""#compdef jrpc-unix
# jrpc-unix zsh completion: eval "$(jrpc-unix completion zsh)" (after compinit)
_jrpc_unix() {
    local -a found open
    found=("${(@f)$(jrpc-unix __complete zsh -- "${(@)words[2,CURRENT]}" 2>/dev/null)}")
    open=(${(M)found:#*[=/]})
    found=(${found:#*[=/]})
    local ret=1
    (( ${#found} )) && compadd -Q -- "${(@)found}" && ret=0
    (( ${#open} )) && compadd -Q -S '' -- "${(@)open}" && ret=0
    return ret
}
compdef _jrpc_unix jrpc-unix
""",
    "fish": r"""# jrpc-unix fish completion: jrpc-unix completion fish | source
function __jrpc_unix_complete
    set -l words (commandline -opc) (commandline -ct)
    jrpc-unix __complete fish -- $words[2..-1] 2>/dev/null
end
complete -c jrpc-unix -f -a '(__jrpc_unix_complete)'
""",
}


def complete_main(argv: list[str]) -> int:
    """``__complete SHELL -- WORDS...`` (bash: ``-- LINE``): print one candidate per line."""
    if len(argv) < 2 or argv[0] not in SCRIPTS or argv[1] != "--":
        return 2
    shell, words = argv[0], argv[2:]
    cut = 0
    if shell == "bash":  # bash gives the line; it replaces only the part after the last = or :
        words = _split(words[0] if words else "")[1:]  # the line starts with the program
        cut = max(words[-1].rfind("="), words[-1].rfind(":")) + 1 if words else 0
    from .parser import build_parser

    for found in candidates(build_parser(), words or [""]):
        print(found[cut:])
    return 0


def _split(line: str) -> list[str]:
    """The words of a partial command line (an open quote closed); "" last if it ends in a space."""
    for closing in ("", '"', "'"):
        try:
            words = shlex.split(line + closing)
            break
        except ValueError:
            continue
    else:
        words = line.split()
    if not line or line[-1].isspace():
        words.append("")
    return words


def candidates(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """What may complete the last of ``words`` (the command line after ``jrpc-unix``)."""
    subs = _subcommands(parser)
    current = words[-1]
    if len(words) == 1:
        return sorted(n for n in subs if n.startswith(current) and not n.startswith("_"))
    sub = subs.get(words[0])
    if sub is None:
        return []
    previous = sub._option_string_actions.get(words[-2]) if len(words) > 2 else None
    if previous is not None and previous.nargs != 0:  # the value of an option
        return [str(c) for c in previous.choices or () if str(c).startswith(current)]
    if current.startswith("-"):
        options = (o for a in sub._actions for o in a.option_strings if o.startswith("--") or len(o) == 2)
        return sorted(o for o in options if o.startswith(current))
    given = _positionals(sub, words[1:-1])
    actions = [a for a in sub._actions if not a.option_strings]
    if actions and actions[0].dest == "socket" and not (given and looks_like_address(given[0])):
        target = default_target()
        if target is not None and (given or not looks_like_address(current)):
            given.insert(0, target)  # SOCK left out: $JRPC_UNIX_SOCKET
    action = _next_action(actions, len(given))
    if action is None:
        return []
    if action.choices:
        return [str(c) for c in action.choices if str(c).startswith(current)]
    if action.dest == "socket":
        return _paths(current)
    if action.dest == "method" and given:
        return [m for m in _names(given[0])["methods"] if m.startswith(current)]
    if action.dest == "topic" and given:
        return [t for t in _names(given[0])["topics"] if t.startswith(current)]
    if action.dest == "params" and len(given) >= 2 and "=" not in current:
        params = _names(given[0])["params"].get(given[1], [])
        used = {w.partition("=")[0] for w in given[2:]}
        return [f"{p}=" for p in params if p.startswith(current) and p not in used]
    return []


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _positionals(sub: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """The positional words among ``words`` (options and their values left out)."""
    found: list[str] = []
    skip = False
    ended = False
    for word in words:
        if skip:
            skip = False
        elif ended or not word.startswith("-") or word == "-":
            found.append(word)
        elif word == "--":
            ended = True
        else:
            action = sub._option_string_actions.get(word)
            skip = action is not None and action.nargs != 0
    return found


def _next_action(actions: list[argparse.Action], count: int) -> argparse.Action | None:
    """The positional action the word after ``count`` positional words fills."""
    for action in actions:
        if action.nargs in ("*", "+", argparse.REMAINDER):
            return action
        if count == 0:
            return action
        count -= 1
    return None


def _paths(prefix: str) -> list[str]:
    """Files and directories starting with ``prefix`` (directories with a trailing /)."""
    if prefix.startswith("@"):
        return []
    found = sorted(glob.glob(glob.escape(prefix) + "*"))
    return [p + "/" if os.path.isdir(p) else p for p in found]


def _names(socket: str) -> dict[str, Any]:
    """``{"methods": [...], "topics": [...], "params": {method: [names]}}`` of the server at
    ``socket``; from the cache when fresh, empty when the server cannot say."""
    path = _cache_path(socket)
    try:
        if time.time() - os.stat(path).st_mtime < CACHE_SECONDS:
            with open(path, encoding="utf-8") as f:
                cached: dict[str, Any] = json.load(f)
            return cached
    except (OSError, ValueError):
        pass
    names = _ask(socket)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(names, f)
        os.replace(path + ".tmp", path)
    except OSError:
        pass  # no cache: the next Tab asks again
    return names


def _cache_path(socket: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(os.path.abspath(socket).encode() if socket[:1] != "@" else socket.encode())
    return os.path.join(base, "jrpc-unix", f"complete-{key.hexdigest()[:24]}.json")


def _ask(socket: str) -> dict[str, Any]:
    from .._client.blocking import Client
    from .._errors import JrpcUnixError, RpcError

    names: dict[str, Any] = {"methods": [], "topics": [], "params": {}}
    try:
        with Client(socket, timeout=ASK_TIMEOUT) as client:
            try:
                doc = client.call("rpc.discover")
            except RpcError:  # discovery off: no names
                doc = {}
            methods = doc.get("methods") if isinstance(doc, dict) else None
            for m in methods if isinstance(methods, list) else []:
                if isinstance(m, dict) and isinstance(m.get("name"), str):
                    names["methods"].append(m["name"])
                    params = [p.get("name") for p in m.get("params", []) if isinstance(p, dict)]
                    names["params"][m["name"]] = [p for p in params if isinstance(p, str)]
            topics = client.call("rpc.topics")  # [{"topic": name, ...}]
            if isinstance(topics, list):
                found = [t.get("topic") for t in topics if isinstance(t, dict)]
                names["topics"] = [t for t in found if isinstance(t, str)]
    except (JrpcUnixError, OSError):
        pass
    return names
