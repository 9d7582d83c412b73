"""``jrpc-unix shell [SOCK]``: an interactive session with one service.

A prompt with history (``$XDG_STATE_HOME/jrpc-unix/history``) and Tab completion of method
names and their ``key=`` params (from ``rpc.discover``, read once at start); each line is
``METHOD [PARAMS...]`` as ``jrpc-unix call`` takes them; results are pretty-printed; errors are
``error [code] message`` (with ``did you mean``). ``.watch TOPIC [key=value...]`` subscribes on
a connection of its own, and its events are printed as they arrive, above the prompt.

The line editor is the standard library's ``readline`` (GNU readline: history, Emacs/vi keys,
completion), not prompt_toolkit: it is enough for this, imports in ~1 ms against ~120 ms and
~1 MB of memory against ~20 MB (specs/clients.md, "shell"), and adds no dependency. Only this
command imports it, and threading: ``call`` stays light. With stdin not a terminal it reads
lines without a prompt, so a here-document drives it like a script.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
import threading
from typing import TYPE_CHECKING, Any

from .._client.blocking import Client
from .._errors import JrpcUnixError, RpcError
from .exits import EXIT_OK
from .params import UsageError, parse_params
from .render import json_text, print_rpc_error, visible

if TYPE_CHECKING:
    from argparse import Namespace

__all__ = ["Session", "shell_command"]

HELP = """\
METHOD [PARAMS...]           call METHOD (params as for jrpc-unix call: JSON, key=value, words, @FILE)
.watch TOPIC [key=value...]  print TOPIC's events as they arrive
.unwatch TOPIC               stop printing them
.methods                     list the methods
.help                        this text
.quit                        leave (or Ctrl-D)"""


class Session:
    """One shell: the client, the names for completion, the watches and their threads."""

    def __init__(self, client: Client, make_client: Any, interactive: bool) -> None:
        self.client = client
        self.make_client = make_client  # a new connection for each watch
        self.interactive = interactive
        self.prompt = "jrpc> " if interactive else ""
        self.methods: dict[str, list[str]] = {}
        self.watches: dict[str, Client] = {}
        self.lock = threading.Lock()  # one writer at a time: results, and events from watches

    def load_names(self) -> None:
        """Method names and their params from ``rpc.discover`` (none when it is off)."""
        try:
            doc = self.client.call("rpc.discover")
        except RpcError:
            return
        for m in doc.get("methods", []) if isinstance(doc, dict) else []:
            if isinstance(m, dict) and isinstance(m.get("name"), str):
                params = [p.get("name") for p in m.get("params", []) if isinstance(p, dict)]
                self.methods[m["name"]] = [p for p in params if isinstance(p, str)]

    def complete(self, line: str, text: str) -> list[str]:
        """Candidates for ``text``, the word being typed at the end of ``line``."""
        words = line.split()
        if not words or (len(words) == 1 and not line.endswith(" ")):
            names = [*self.methods, ".watch", ".unwatch", ".methods", ".help", ".quit"]
            return sorted(n for n in names if n.startswith(text))
        used = {w.partition("=")[0] for w in words[1:]}
        params = self.methods.get(words[0], [])
        return [f"{p}=" for p in params if p.startswith(text) and p not in used]

    def say(self, text: str, stream: Any = None) -> None:
        with self.lock:
            print(text, file=stream or sys.stdout, flush=True)

    def run_line(self, line: str) -> bool:
        """Do one line; False to leave."""
        text = line.strip()
        if not text or text.startswith("#"):
            return True
        if text in (".quit", ".exit"):
            return False
        try:
            words = shlex.split(text)
        except ValueError as exc:
            self.say(f"jrpc-unix: cannot split the line: {exc}", sys.stderr)
            return True
        try:
            self._do(words)
        except UsageError as exc:
            self.say(f"jrpc-unix: {exc}", sys.stderr)
        except RpcError as exc:
            with self.lock:
                print_rpc_error(exc)
        except JrpcUnixError as exc:
            self.say(f"jrpc-unix: {visible(str(exc))}", sys.stderr)
        return True

    def _do(self, words: list[str]) -> None:
        command, rest = words[0], words[1:]
        if command == ".help":
            self.say(HELP)
        elif command == ".methods":
            self.say("\n".join(self.methods) or "(rpc.discover is off: no list)")
        elif command == ".watch" and rest:
            self.watch(rest[0], rest[1:])
        elif command == ".unwatch" and rest:
            self.unwatch(rest[0])
        elif command.startswith("."):
            raise UsageError(f"unknown command {command} (.help lists them)")
        else:
            result = self.client.call_raw(command, parse_params(rest))[0]
            self.say(json_text(result, indent=self.interactive))

    def watch(self, topic: str, words: list[str]) -> None:
        if topic in self.watches:
            raise UsageError(f"already watching {topic}")
        params = parse_params(words, "keywords")
        assert not isinstance(params, list)
        client = self.make_client()
        sub = client.subscribe(topic, **(params or {}))  # errors (no such topic) raise here
        self.watches[topic] = client
        self.say(f"watching {topic} (.unwatch {topic} to stop)", sys.stderr)
        threading.Thread(target=self._events, args=(topic, sub, client), daemon=True).start()

    def _events(self, topic: str, sub: Any, client: Client) -> None:
        try:
            for data in sub.events(timeout=None):
                with self.lock:
                    if self.interactive:  # above the prompt, then the prompt and the typing again
                        import readline

                        sys.stdout.write(f"\r\x1b[K[{visible(topic)}] {json_text(data)}\n")
                        sys.stdout.write(self.prompt + readline.get_line_buffer())
                        sys.stdout.flush()
                    else:
                        print(f"[{visible(topic)}] {json_text(data)}", flush=True)
        except JrpcUnixError:
            pass  # closed by .unwatch or at the end
        if self.watches.get(topic) is client:
            self.watches.pop(topic, None)

    def unwatch(self, topic: str) -> None:
        client = self.watches.pop(topic, None)
        if client is None:
            raise UsageError(f"not watching {topic}")
        client.close()

    def close(self) -> None:
        for client in list(self.watches.values()):
            client.close()
        self.watches.clear()


def _history_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "jrpc-unix", "history")


def _read_lines(session: Session) -> None:
    """The loop: readline on a terminal, plain lines otherwise."""
    if not session.interactive:
        for line in sys.stdin:
            if not session.run_line(line):
                return
        return
    import readline

    history = _history_path()
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_completer_delims(" \t")
    readline.parse_and_bind("tab: complete")

    def completer(text: str, state: int) -> str | None:
        found = session.complete(readline.get_line_buffer()[: readline.get_endidx()], text)
        return found[state] if state < len(found) else None

    readline.set_completer(completer)
    session.say(f"connected to {session.client.path}; .help for help, Ctrl-D to leave", sys.stderr)
    try:
        while True:
            try:
                line = input(session.prompt)
            except EOFError:
                print()
                return
            except KeyboardInterrupt:  # Ctrl-C drops the line, as in bash
                print()
                continue
            if not session.run_line(line):
                return
    finally:
        try:
            os.makedirs(os.path.dirname(history), mode=0o700, exist_ok=True)
            readline.set_history_length(1000)
            readline.write_history_file(history)
        except OSError:
            pass


def shell_command(args: Namespace, client: Client) -> int:
    def make_client() -> Client:
        return Client(args.socket, timeout=args.timeout, connect_timeout=args.connect_timeout)

    session = Session(client, make_client, sys.stdin.isatty())
    session.load_names()
    try:
        _read_lines(session)
    finally:
        session.close()
    return EXIT_OK
