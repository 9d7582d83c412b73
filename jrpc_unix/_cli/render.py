r"""What the command line prints: JSON results, error lines, and a progress bar on stderr.

Each result is flushed as it is printed, so ``jrpc-unix watch`` shows events as they come even
through a pipe. The text renderings (methods, stats) are :mod:`.text`'s.

Everything printed came from a server we need not trust, and a terminal obeys control
characters: ``ESC [ 2 J`` clears it, ``ESC ] 0 ;`` retitles it, U+009B alone starts a control
sequence, ``\r`` rewrites a line. So no control character from the server reaches the output
raw. Text (error lines, tables, the progress bar) shows them as ``\x1b``-style escapes
(:func:`visible`); JSON shows them as ``\u001b``-style escapes, which is still the same JSON
(:func:`json_text`). Only ``--raw`` into a pipe passes the server's bytes as they came.
"""

from __future__ import annotations

import json
import os
import re
import sys

from .._errors import RpcError

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Any, TextIO

__all__ = [
    "ProgressBar",
    "json_text",
    "pretty",
    "print_json",
    "print_line",
    "print_raw",
    "print_rpc_error",
    "say",
    "visible",
]


# -- control characters from the server ----------------------------------------------------------

#: Compiled on first use (compiling these classes is a measurable share of a CLI start, and a
#: plain ASCII answer needs none of them): C0 controls (tab aside), DEL, C1 controls and lone
#: surrogates (which cannot even be written as UTF-8), newline aside in ``but_newline``; what
#: JSON text may still hold raw (DEL, C1, lone surrogates: JSON escapes C0 itself); what a raw
#: answer line may hold (C0 too, tab aside; CR is JSON whitespace; it is valid UTF-8).
_SOURCES = {
    "controls": r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]",
    "but_newline": r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]",
    "json_unsafe": r"[\x7f-\x9f\ud800-\udfff]",
    "raw_unsafe": r"[\x00-\x08\x0a-\x1f\x7f-\x9f]",
}
_COMPILED: dict[str, re.Pattern[str]] = {}


def _pattern(name: str) -> re.Pattern[str]:
    found = _COMPILED.get(name)
    if found is None:
        found = _COMPILED[name] = re.compile(_SOURCES[name])
    return found


_NAMED = {"\n": "\\n", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match[0]
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if char < "\u0100" else f"\\u{ord(char):04x}")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match[0]):04x}"


def visible(text: str, newlines: bool = False) -> str:
    r"""``text`` with every control character shown as an escape (``\x1b``, ``\r``); tabs stay,
    and newlines too when ``newlines`` (a multi-line rendering of our own)."""
    return _pattern("but_newline" if newlines else "controls").sub(_escape, text)


def json_text(value: Any, indent: bool = False) -> str:
    """``value`` as JSON with no raw control character: the same JSON, safe on a terminal."""
    if indent:
        text = json.dumps(value, indent=2, ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if text.isascii() and "\x7f" not in text:
        return text  # (the common case: nothing unsafe can be in it)
    return _pattern("json_unsafe").sub(_json_escape, text)


# -- output ------------------------------------------------------------------------------


def pretty(flag: bool | None) -> bool:
    return sys.stdout.isatty() if flag is None else flag


def print_json(value: Any, pretty: bool) -> None:
    print_line(json_text(value, pretty).encode())


def print_raw(line: bytes) -> None:
    """An answer line as the server sent it; on a terminal, its control characters escaped."""
    if sys.stdout.isatty():
        line = _pattern("raw_unsafe").sub(_json_escape, line.decode(errors="replace")).encode()
    print_line(line)


def print_line(line: bytes) -> None:
    """One line of UTF-8 as bytes (whatever the locale's encoding), flushed."""
    sys.stdout.flush()
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


def print_rpc_error(exc: RpcError, prefix: str = "") -> None:
    """``error [code] message`` and, when there is data, ``  data: <JSON>`` on stderr; for an
    unknown method with close names (-32601's ``did_you_mean``), ``  did you mean: a, b?``."""
    print(f"{prefix}error [{exc.code}] {visible(exc.message)}", file=sys.stderr)
    close = exc.data.get("did_you_mean") if isinstance(exc.data, dict) and exc.code == -32601 else None
    if isinstance(close, list) and close:
        print(f"  did you mean: {visible(', '.join(map(str, close)))}?", file=sys.stderr)
    elif exc.data is not None:
        print(f"  data: {json_text(exc.data)}", file=sys.stderr)


def say(line: str) -> None:
    """``jrpc-unix: LINE`` on stderr (what ``-v`` tells)."""
    print(f"jrpc-unix: {visible(line)}", file=sys.stderr, flush=True)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


class ProgressBar:
    """A call's progress reports as one line on a terminal (stderr), redrawn for each report.

    ``[#########...........]  45%  9/20  step 9 of 20``; without a total, just the count and
    the message. :meth:`clear` erases it before the result is printed.
    """

    def __init__(self, stream: TextIO, width: int = 20) -> None:
        self.stream = stream
        self.width = width
        self.shown = False

    def __call__(self, done: Any, total: Any, message: Any) -> None:
        line = visible(self.line(done, total, message))
        self.stream.write("\r" + line[: self._columns() - 1] + "\x1b[K")
        self.stream.flush()
        self.shown = True

    def line(self, done: Any, total: Any, message: Any) -> str:
        parts: list[str] = []
        numeric = isinstance(done, (int, float)) and isinstance(total, (int, float))
        if numeric and total > 0 and not isinstance(total, bool):
            share = min(max(done / total, 0.0), 1.0)
            filled = round(share * self.width)
            parts += [f"[{'#' * filled}{'.' * (self.width - filled)}]", f"{share:4.0%}"]
            parts.append(f"{_number(done)}/{_number(total)}")
        else:
            parts.append(_number(done))
        if message is not None:
            parts.append(str(message))
        return "  ".join(parts)

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (OSError, ValueError):
            return 80

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False
