"""Sans-IO framings besides newline JSON, and the rule that picks one per connection.

Every stream client gets answers in the framing it used (specs/protocol.md, "Framings"); the
server looks once, at a connection's first bytes (:func:`detect`):

* ``{``, ``[`` or whitespace: newline-delimited JSON (:class:`~.framing.LineSplitter`);
* ``0x00``: the Go original's frames (:class:`~.unixsock.UnixsockFramer`): a JSON text never
  starts with it, and any message under 16 MiB does;
* ``Content-Length:`` (or ``Content-Type:``), case-insensitively: LSP-style header blocks
  (:class:`LspFramer`), as vscode-jsonrpc and every LSP client library send;
* ``0x1E``: RFC 7464 JSON text sequences (:class:`JsonSeqFramer`).

Anything else is :data:`UNKNOWN`: it is read as newline JSON (one -32700 answer, as before).
Standard library only: the clients' ``framing=`` reuses these framers.
Every framer has the :class:`Framer` interface, and the same limits: a message over
``max_size`` is one :data:`~.framing.TOO_LONG`, its bytes dropped as they come (a declared
length is never allocated); a framing the stream breaks is one :class:`~.framing.BadFrame`,
after which the framer has ``ended`` (nothing after it can be framed again).
"""

from __future__ import annotations

import json
from typing import Final, Protocol

from .framing import TOO_LONG, BadFrame, Frame

__all__ = ["Dropping", "NAMES", "UNKNOWN", "Framer", "JsonSeqFramer", "LspFramer", "detect", "first_bytes"]

#: The framings by name: what ``detect`` returns, ``framing=`` and ``--framing`` accept
#: (:func:`~.unixsock.make_framer` makes the server's framer for each).
NAMES: Final = ("newline", "unixsock", "lsp", "json-seq")
UNKNOWN: Final = "unknown"
_HEADERS: Final = (b"content-length:", b"content-type:")
_MAX_HEADER: Final = 4096  # an LSP header block longer than this is not one
_RS: Final = 0x1E


class Framer(Protocol):
    """Bytes in, messages out; answers out in the same framing."""

    @property
    def name(self) -> str: ...
    @property
    def ended(self) -> bool:
        """Read nothing more: the client asked to close, or broke the framing."""
        ...

    @property
    def mid_line(self) -> bool:
        """A message has begun and not ended (for the idle watchdog's slow-message rule)."""
        ...

    def feed(self, data: bytes) -> list[Frame]: ...
    def eof(self) -> list[Frame]: ...
    def encode(self, answers: list[bytes]) -> bytes:
        """The bytes that carry ``answers`` (each a JSON-RPC answer or push, without framing)."""
        ...


def detect(prefix: bytes) -> str | None:
    """The framing a connection's first bytes announce; None until enough bytes have come."""
    if not prefix:
        return None
    first = prefix[0]
    if first in b"{[ \t\r\n":
        return "newline"
    if first == 0:
        return "unixsock"
    if first == _RS:
        return "json-seq"
    head = prefix[:15].lower()
    for header in _HEADERS:
        if header.startswith(head[: len(header)]):
            return "lsp" if len(head) >= len(header) else None
    return UNKNOWN


def first_bytes(prefix: bytes) -> str:
    """What an operator needs to see of an unrecognised start: ``00 00 00 65 …``."""
    return " ".join(f"{b:02x}" for b in prefix[:8])


class Dropping:
    """The rest of a length-prefixed message over the size limit, dropped as it arrives and never
    held (the LSP and the Go original's framers share it)."""

    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = 0  # bytes still to drop

    def start(self, buf: bytearray, length: int) -> None:
        """Drop ``length`` bytes: those ``buf`` holds now, the rest from what arrives later."""
        n = min(length, len(buf))
        del buf[:n]
        self.left = length - n

    def past(self, data: bytes) -> bytes:
        """``data`` less what is still to be dropped."""
        if not self.left:
            return data
        n = min(self.left, len(data))
        self.left -= n
        return data[n:]


class LspFramer:
    """``Content-Length: N\\r\\n`` (other headers ignored) ``\\r\\n`` then N bytes of JSON."""

    name: Final = "lsp"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._body: int | None = None  # the length of the body being read, after its headers
        self._dropping = Dropping()  # a body over the limit
        self.ended = False

    @property
    def mid_line(self) -> bool:
        return bool(self._buf) or self._body is not None or self._dropping.left > 0

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        if self.ended:
            return out
        buf = self._buf
        buf += self._dropping.past(data)
        while buf:
            if self._body is None:
                end = buf.find(b"\r\n\r\n")
                if end < 0 or end > _MAX_HEADER:
                    if len(buf) > _MAX_HEADER:
                        self._broken(out, f"no end of the header block in its first {_MAX_HEADER} bytes")
                    break
                length = _content_length(bytes(buf[:end]))
                del buf[: end + 4]
                if isinstance(length, str):
                    self._broken(out, length)
                    break
                if length > self.max_size:  # dropped as it comes, never held
                    out.append(TOO_LONG)
                    self._dropping.start(buf, length)
                    continue
                self._body = length
            if len(buf) < self._body:
                break
            out.append(bytes(buf[: self._body]))
            del buf[: self._body]
            self._body = None
        return out

    def _broken(self, out: list[Frame], reason: str) -> None:
        out.append(BadFrame(f"LSP framing: {reason}"))
        self._buf.clear()
        self.ended = True

    def eof(self) -> list[Frame]:
        out: list[Frame] = []
        if self._buf.strip() or self._body is not None:
            self._broken(out, "the connection ended inside a message")
        self._dropping.left = 0
        return out

    @staticmethod
    def encode(answers: list[bytes]) -> bytes:
        return b"".join(b"Content-Length: %d\r\n\r\n%b" % (len(a), a) for a in answers)


def _content_length(block: bytes) -> int | str:
    """The body length a header block declares, or why it declares none."""
    length: int | str = "no Content-Length header"
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            return f"a header line without ':': {line[:40]!r}"
        if name.strip().lower() == b"content-length":
            value = value.strip()
            if not value.isdigit() or len(value) > 15:
                return f"Content-Length is not a length: {value[:40]!r}"
            length = int(value)
    return length


class JsonSeqFramer:
    """RFC 7464: ``0x1E`` before each JSON text, ``\\n`` after it.

    A record ends at the next ``0x1E`` or at EOF, as the RFC says, or sooner at a ``\\n`` after
    which its text is complete JSON: a client waits for its answer before sending the next RS.
    """

    name: Final = "json-seq"
    ended: Final = False

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._discarding = False  # inside a record over the limit, dropping until the next RS

    @property
    def mid_line(self) -> bool:
        return self._discarding or bool(self._buf.strip())

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        parts = data.split(bytes((_RS,)))
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i:  # an RS: the record before it ends, a new one begins
                self._end(out)
                self._discarding = False
            self._add(part, out, early=i == last)
        return out

    def _add(self, part: bytes, out: list[Frame], *, early: bool) -> None:
        """Buffer a record's bytes; ``early``: no RS follows in this read, so deliver the record
        once its text is complete JSON (parsed to know: only for a read's last record, as an RS
        ends the others, which makes a burst of records cost one parse each, not two)."""
        if self._discarding or not part:
            return
        buf = self._buf
        buf += part
        if len(buf) > self.max_size:
            if buf.strip():
                out.append(TOO_LONG)
            buf.clear()
            self._discarding = True
            return
        if early and part.find(b"\n") >= 0:
            text = bytes(buf).rstrip()
            if text[-1:] in (b"}", b"]") and _complete(text):
                out.append(text)
                buf.clear()

    def _end(self, out: list[Frame]) -> None:
        text = bytes(self._buf).strip()
        self._buf.clear()
        if text and not self._discarding:
            out.append(text)

    def eof(self) -> list[Frame]:
        out: list[Frame] = []
        self._end(out)
        self._discarding = False
        return out

    @staticmethod
    def encode(answers: list[bytes]) -> bytes:
        return b"".join(b"\x1e%b\n" % a for a in answers)


def _complete(text: bytes) -> bool:
    """(The standard library's parser: this module is on the blocking client's light path.)"""
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
