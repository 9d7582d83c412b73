"""Sans-IO newline framing: bytes in, complete lines out. No JSON, no sockets.

Rules (specs/protocol.md, "Framing"): one message per ``\\n``-terminated line; a trailing ``\\r``
is dropped; blank lines are skipped; a last line without ``\\n`` before EOF is still a message.
A line longer than ``max_size`` bytes is never buffered whole: the splitter reports it once as
:data:`TOO_LONG`, discards its bytes as they arrive, and resumes at the next line, so memory stays
bounded however the reads are split. ``\\n`` never occurs inside a multi-byte UTF-8 sequence, so
splitting raw bytes is safe; UTF-8 itself is checked by the JSON parser.

Each read is searched once, never the buffer: a long line arriving in many small reads costs
linear, not quadratic, time. A read is cut with one ``split``; only the line begun in earlier
reads is joined to the buffer, so a read that ends mid-line (most large reads do) costs no more
than one that ends on a newline.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Final


__all__ = ["TOO_LONG", "BadFrame", "Frame", "LineSplitter"]


class _TooLong:
    """Marker for a line that exceeded the size limit and was dropped."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "TOO_LONG"


TOO_LONG: Final = _TooLong()


class BadFrame:
    """A framing the stream broke (a bad header, a missing separator): answered -32700 with
    ``reason``; nothing after it can be framed, so the framer ends (``ended``)."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __len__(self) -> int:  # (no bytes of it are kept)
        return 0

    def __repr__(self) -> str:
        return f"BadFrame({self.reason!r})"


#: What a framer's ``feed`` gives: a message's bytes, or the marker of one it refused.
Frame = bytes | _TooLong | BadFrame


class LineSplitter:
    """Cuts a byte stream into lines; see the module docstring."""

    __slots__ = ("_buf", "_cr", "_discarding", "max_size")

    #: The framing's name (specs/protocol.md, "Framings"); the other framers have the same
    #: interface (:class:`~jrpc_unix._wire.framings.Framer`).
    name: Final = "newline"
    #: Newline framing never asks to close the connection (the unixsock ``close`` does).
    ended: Final = False

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1 byte")
        self.max_size = max_size
        self._buf = bytearray()
        self._discarding = False  # inside an over-size line, dropping until its end
        self._cr = False  # a full-size line's "\r" held back: the end of "\r\n", or too long?

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete line."""
        return len(self._buf)

    @property
    def mid_line(self) -> bool:
        """A line has begun and not ended (held, or being discarded as too long)."""
        return bool(self._buf) or self._discarding or self._cr

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return the lines they complete, in order."""
        out: list[Frame] = []
        if self._cr and data:
            self._cr = False
            if data[0] == 0x0A:  # it was the "\r" of "\r\n": put it back for _emit to strip
                self._buf.append(0x0D)
            else:  # it was line content: one byte too many
                self._too_long(out)
        if self._discarding:
            nl = data.find(b"\n")
            if nl < 0:
                return out
            self._discarding = False
            data = data[nl + 1 :]
        buf = self._buf
        if data.find(b"\n") < 0:  # (find, not `in`: see _codec.dumps) no line ends here
            buf += data
            return self._hold(out)
        lines = data.split(b"\n")
        tail = lines.pop()  # the start of a line that ends in a later read ("" if none)
        if buf:  # the line begun in earlier reads ends here
            buf += lines[0]
            self._emit(bytes(buf), out)
            buf.clear()
            del lines[0]
        if len(data) <= self.max_size + 1 and data.find(b"\r") < 0:
            # No line can be too long and none ends in "\r" (checked once for the whole read,
            # not per line): only blank lines to skip, with no call per line.
            out += [line for line in lines if line and not line.isspace()]
        else:
            for line in lines:
                self._emit(line, out)
        buf += tail
        return self._hold(out)

    def _hold(self, out: list[Frame]) -> list[Frame]:
        """Keep the unfinished line in the buffer, unless it is over the limit already."""
        buf = self._buf
        if len(buf) == self.max_size + 1 and buf[-1] == 0x0D:
            del buf[-1]  # may end "\r\n": decide when the next byte comes
            self._cr = True
        if len(buf) > self.max_size:
            self._too_long(out)
        return out

    def _too_long(self, out: list[Frame]) -> None:
        out.append(TOO_LONG)
        self._buf.clear()
        self._discarding = True

    def eof(self) -> list[Frame]:
        """The peer finished sending: a final unterminated line is still a message."""
        out: list[Frame] = []
        if self._cr:  # the held "\r" ends the last line: put it back for _emit to strip
            self._buf.append(0x0D)
        if self._buf and not self._discarding:
            self._emit(bytes(self._buf), out)
        self._buf.clear()
        self._discarding = self._cr = False
        return out

    @staticmethod
    def encode(answers: list[bytes]) -> bytes:
        """The answers, one per line (the writer inlines this for the newline framing)."""
        return b"\n".join(answers) + b"\n"

    def _emit(self, line: bytes, out: list[Frame]) -> None:
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.max_size:
            out.append(TOO_LONG)
        elif line and not line.isspace():
            out.append(line)
