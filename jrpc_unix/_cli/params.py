"""What the command line sends: PARAMS words and ``jrpc-unix batch`` lines, parsed.

lightning-cli's habits: one JSON array/object, or ``key=value`` pairs, or plain words; a value
is its JSON value when it parses as JSON (``5``, ``true``, ``[1]``), else the string itself.
curl's: ``@FILE`` (or ``-``, or ``@-``: stdin) is the whole params as JSON, read from there;
``key=@FILE`` one value, read the same way as a word (its JSON value, else its text). A word
that must start with ``@`` is written as JSON: ``'"@x"'``.
"""

from __future__ import annotations

import sys

from .._wire.requests import Call, Notify, Params
from .._wire.stdjson import loads

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import IO, Any

__all__ = ["UsageError", "batch_item", "parse_params", "parse_timeout"]


def _is_pair(word: str) -> bool:
    """``key=value``: a non-empty key without whitespace before the first ``=``."""
    key, eq, _ = word.partition("=")
    return bool(eq and key) and not any(c.isspace() for c in key)


class UsageError(Exception):
    """The command line or its input is wrong: exit 2 with this message."""


def _word(text: str) -> Any:
    """A word's value: its JSON value when it parses as JSON, else the string itself."""
    try:
        return loads(text.encode())
    except ValueError:
        return text


def _json_params(text: str, where: str) -> Params:
    if not text.strip():
        return None
    try:
        value = loads(text.encode())
    except ValueError as exc:
        raise UsageError(f"{where} is not valid JSON: {exc}") from None
    if value is not None and not isinstance(value, (list, dict)):
        raise UsageError(f"{where} must be a JSON array or object, not {text.strip()[:40]}")
    return value or None


def _read(source: str, stdin: IO[str] | None) -> tuple[str, str]:
    """The text of ``@FILE`` / ``@-`` / ``-`` and how to name it in an error."""
    if source in ("-", "@-"):
        return (stdin or sys.stdin).read(), "params read from stdin"
    path = source[1:]
    try:
        with open(path, encoding="utf-8") as file:
            return file.read(), f"params read from {path}"
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"cannot read {source}: {reason}") from None


def parse_params(words: list[str], style: str = "auto", stdin: IO[str] | None = None) -> Params:
    """PARAMS words -> JSON-RPC params: one JSON array/object (given, or read from ``@FILE`` or
    ``-``), key=value (``key=@FILE``), words."""
    if not words:
        return None
    if words == ["-"] or (len(words) == 1 and words[0].startswith("@") and style != "ordered"):
        return _json_params(*_read(words[0], stdin))
    if len(words) == 1 and words[0].lstrip().startswith(("[", "{")) and style == "auto":
        return _json_params(words[0], "PARAMS")
    named = [_is_pair(w) for w in words]
    if style == "keywords" or (style == "auto" and all(named)):
        if not all(named):
            raise UsageError(f"params must be key=value pairs here, not {words[named.index(False)]!r}")
        pairs = [w.split("=", 1) for w in words]
        return {key: _word(_read(v, stdin)[0]) if v.startswith("@") else _word(v) for key, v in pairs}
    if style == "auto" and any(named):
        raise UsageError("params are all key=value or all positional; use -o to send 'a=b' words as strings")
    return [_word(w) for w in words]


def batch_item(line: str, style: str = "auto") -> Call | None:
    """One stdin line of ``jrpc-unix batch``: ``METHOD [PARAMS]`` or a JSON request object."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    if text.startswith("{"):
        obj = _json_params(text, "the request")
        if not isinstance(obj, dict) or not isinstance(obj.get("method"), str):
            raise UsageError(f"a JSON request needs a string 'method': {text[:60]}")
        params = obj.get("params")
        if params is not None and not isinstance(params, (list, dict)):
            raise UsageError(f"'params' must be an array or object: {text[:60]}")
        kind = Call if "id" in obj else Notify
        return kind.with_params(obj["method"], params)
    method, _, rest = text.partition(" ")
    if rest.lstrip().startswith(("[", "{")) and style == "auto":  # METHOD [1, 2]: JSON params
        return Call.with_params(method, _json_params(rest, "PARAMS"))
    import shlex  # only batch lines need it

    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"cannot split {text[:60]!r}: {exc}") from None
    if words[1:] in (["-"], ["@-"]) or any(w.endswith("=@-") for w in words[1:]):
        raise UsageError("'-' (params from stdin) cannot be used inside a batch")
    return Call.with_params(words[0], parse_params(words[1:], style))


def parse_timeout(text: str) -> float | None:
    """Seconds; ``0``, ``inf`` or ``none`` wait forever (an argparse type: argparse is loaded)."""
    import argparse

    if text.lower() in ("none", "inf", "infinity", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if value < 0 or value != value:
        raise argparse.ArgumentTypeError(f"a timeout cannot be {text}")
    return value
