"""What the command line prints: JSON results, error lines, and a progress bar on stderr.

Each result is flushed as it is printed, so ``jrpc-unix watch`` shows events as they come even
through a pipe. The text renderings (methods, stats) are :mod:`._cli_text`'s.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, TextIO

from ._errors import RpcError
from ._stdjson import dumps

__all__ = ["ProgressBar", "pretty", "print_json", "print_line", "print_rpc_error"]


# -- output ------------------------------------------------------------------------------


def pretty(flag: bool | None) -> bool:
    return sys.stdout.isatty() if flag is None else flag


def print_json(value: Any, pretty: bool) -> None:
    if pretty:
        print(json.dumps(value, indent=2, ensure_ascii=False), flush=True)
    else:
        print_line(dumps(value))


def print_line(line: bytes) -> None:
    """One line of UTF-8 JSON as bytes (whatever the locale's encoding), flushed."""
    sys.stdout.flush()
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


def print_rpc_error(exc: RpcError, prefix: str = "") -> None:
    """``error [code] message`` and, when there is data, ``  data: <JSON>`` on stderr."""
    print(f"{prefix}error [{exc.code}] {exc.message}", file=sys.stderr)
    if exc.data is not None:
        print(f"  data: {dumps(exc.data).decode()}", file=sys.stderr)


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
        self.stream.write("\r" + self.line(done, total, message)[: self._columns() - 1] + "\x1b[K")
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
