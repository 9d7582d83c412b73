"""A client's side of the framings (specs/protocol.md, "Framings"), sans-IO.

The client conversation speaks newline JSON; a :class:`ClientFraming` translates its bytes to
the chosen framing on the way out and back to newline JSON on the way in, so the conversation,
both clients and their transports stay as they are (:mod:`jrpc_unix._client.framed` wraps the
streams). ``"unixsock"`` speaks to the Go original's servers: each request becomes an envelope
(``cmd`` = method, ``args`` = named params, ``respond`` = it has an id, ``close`` = false: the
connection is kept), and each reply envelope the answer to the oldest unanswered call (a Go
server answers a connection's frames in order): ``success`` gives the ``payload`` string as the
result, ``failure`` an application error (code 1) whose message is the ``error`` text.
"""

from __future__ import annotations

import collections
import json
import struct
from typing import Any, Final

from .._errors import ProtocolError
from .framing import TOO_LONG, BadFrame, Frame
from .framings import NAMES, Framer, JsonSeqFramer, LspFramer

__all__ = ["ClientFraming"]

_HEAD: Final = struct.Struct(">I")


class ClientFraming:
    """Translates one connection's bytes between newline JSON and framing ``name``."""

    def __init__(self, name: str, max_size: int) -> None:
        if name not in NAMES:
            raise ValueError(f"framing must be one of {', '.join(sorted(NAMES))}, not {name!r}")
        self.name = name
        self.max_size = max_size
        self._framer: Framer | None = None
        if name == "lsp":
            self._framer = LspFramer(max_size)
        elif name == "json-seq":
            self._framer = JsonSeqFramer(max_size)
        self._buf = bytearray()
        self._calls: collections.deque[Any] = collections.deque()  # unixsock: ids awaiting replies

    def outgoing(self, data: bytes) -> bytes:
        """The conversation's newline-JSON messages, framed."""
        lines = [line for line in data.split(b"\n") if line.strip()]
        if self._framer is not None:
            return self._framer.encode(lines)
        if self.name == "newline":
            return data
        return b"".join(self._envelope(line) for line in lines)

    def incoming(self, data: bytes) -> bytes:
        """Framed bytes received, as newline-JSON lines (b"" until a message is whole)."""
        if self.name == "newline":
            return data
        frames = self._unixsock(data) if self._framer is None else self._framer.feed(data)
        return b"".join(_line(f, self.max_size) for f in frames)

    def _envelope(self, line: bytes) -> bytes:
        request = json.loads(line)
        if not isinstance(request, dict):
            raise ProtocolError("framing 'unixsock' carries one request at a time, not a batch")
        params = request.get("params")
        if params is not None and not isinstance(params, dict):
            raise ProtocolError(
                "framing 'unixsock' carries named params only (the Go envelope's args is an object)"
            )
        respond = "id" in request
        if respond:
            self._calls.append(request["id"])
        empty = {"status": "", "error": "", "payload": ""}
        env = {
            "cmd": request["method"],
            "args": params,
            "response": empty,
            "respond": respond,
            "close": False,
        }
        body = json.dumps(env, separators=(",", ":"), ensure_ascii=False).encode()
        return _HEAD.pack(len(body)) + b":" + body

    def _unixsock(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        while len(buf) >= 5:
            if buf[4] != 0x3A:
                raise ProtocolError(f"framing 'unixsock': byte 5 is {buf[4]:#04x}, not ':'")
            (length,) = _HEAD.unpack_from(buf)
            if length > self.max_size:
                raise ProtocolError(
                    f"framing 'unixsock': a reply of {length} bytes exceeds the limit of {self.max_size}"
                )
            if len(buf) < length + 5:
                break
            out.append(self._answer(bytes(buf[5 : length + 5])))
            del buf[: length + 5]
        return out

    def _answer(self, body: bytes) -> bytes:
        try:
            env = {str(k).lower(): v for k, v in json.loads(body).items()}
            response = {str(k).lower(): v for k, v in (env.get("response") or {}).items()}
        except (ValueError, AttributeError):
            raise ProtocolError(f"framing 'unixsock': not a reply envelope: {body[:80]!r}") from None
        if not self._calls:
            raise ProtocolError(f"framing 'unixsock': a reply nobody asked for: {body[:80]!r}")
        rid = self._calls.popleft()
        if response.get("status") == "success":
            answer: dict[str, Any] = {"jsonrpc": "2.0", "result": response.get("payload", ""), "id": rid}
        else:
            error = {"code": 1, "message": str(response.get("error") or "failure")}
            answer = {"jsonrpc": "2.0", "error": error, "id": rid}
        return json.dumps(answer, separators=(",", ":"), ensure_ascii=False).encode()


def _line(frame: Frame, max_size: int) -> bytes:
    if frame is TOO_LONG:
        raise ProtocolError(f"an answer exceeds the limit of {max_size} bytes")
    if isinstance(frame, BadFrame):
        raise ProtocolError(frame.reason)
    assert isinstance(frame, bytes)
    return frame + b"\n"
