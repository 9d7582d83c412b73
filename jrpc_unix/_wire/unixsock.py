"""The Go original's wire (``unixsock``), translated at the edge to and from JSON-RPC. Sans-IO.

A frame is a 4-byte big-endian length N, one ``:``, then N bytes of a JSON envelope
``{"cmd","args","response","respond","close"}`` (keys matched case-insensitively, as Go's
decoder does; a missing key is its zero value). The rules, as the Go original's own bytes show
them, are in ``/work/shared/interop/go-unixsock/README.md`` and specs/migrating-from-unixsock.md:

* ``cmd`` is the method, ``args`` (an object, or null) its named params; ``respond=false`` makes
  it a notification (it runs, nothing is sent); ``close=true`` closes the connection after the
  reply (:attr:`UnixsockFramer.ended`), ``close=false`` reads the next frame.
* The reply is the envelope echoed as Go re-encodes it (``args`` through float64, ``<>&``
  escaped, map keys sorted) with ``response`` = ``{"status":"success"|"failure","error","payload"}``:
  a result is the payload (a string as is, anything else as compact JSON text), an error the
  ``error`` text (an application error's ``data``, a ``Response.fail`` payload, is the payload).
* Each frame is written whole in one write: the Go receiver reads the body with one ``Read``.
"""

from __future__ import annotations

import functools
import json
import re
import struct
from typing import TYPE_CHECKING, Any, Final

from .._errors import ErrorCode
from .fastjson import dumps, loads
from .framing import TOO_LONG, BadFrame, Frame, LineSplitter
from .framings import Dropping, JsonSeqFramer, LspFramer

if TYPE_CHECKING:
    from decimal import Decimal

    from .framings import Framer

__all__ = ["UnixsockFramer", "frame", "go_dumps", "make_framer", "reply_envelope"]

_HEAD: Final = struct.Struct(">I")
_GO_ESCAPES: Final = re.compile(r"\\(.)|([<>&\u2028\u2029])")
_GO_SPECIAL: Final = re.compile(r'[\x00-\x1f"\\<>&\u2028\u2029]')  # none: a string is written as is
_GO_CHAR: Final = {"b": "\\u0008", "f": "\\u000c", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                   "\u2028": "\\u2028", "\u2029": "\\u2029"}  # fmt: skip


def frame(body: bytes) -> bytes:
    """One unixsock frame: length, ``:``, body."""
    return _HEAD.pack(len(body)) + b":" + body


def make_framer(name: str, max_size: int) -> Framer:
    """The server's framer for ``name`` (a :data:`~.framings.NAMES` member; else newline)."""
    if name == "unixsock":
        return UnixsockFramer(max_size)
    if name == "lsp":
        return LspFramer(max_size)
    if name == "json-seq":
        return JsonSeqFramer(max_size)
    return LineSplitter(max_size)


class _Envelope:
    __slots__ = ("args", "close", "cmd")

    def __init__(self, cmd: str, args: Any, close: bool) -> None:
        self.cmd, self.args, self.close = cmd, args, close


_ZERO: Final = _Envelope("", None, False)  # what a frame that is no envelope is answered as


class UnixsockFramer:
    """Server side: Go frames in, JSON-RPC requests out; JSON-RPC answers in, Go frames out."""

    name: Final = "unixsock"

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._dropping = Dropping()  # a frame over the limit
        self._waiting: dict[int, _Envelope] = {}  # by the JSON-RPC id given to its request
        self._next_id = 0
        self.ended = False

    @property
    def mid_line(self) -> bool:
        return bool(self._buf) or self._dropping.left > 0

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        if self.ended:
            return out
        buf = self._buf
        buf += self._dropping.past(data)
        while len(buf) >= 5 and not self.ended:
            if buf[4] != 0x3A:
                out.append(BadFrame(f"unixsock framing: byte 5 is {buf[4]:#04x}, not ':'"))
                buf.clear()
                self.ended = True
                break
            (length,) = _HEAD.unpack_from(buf)
            if length > self.max_size:  # dropped as it comes, never held
                out.append(TOO_LONG)
                self._dropping.start(buf, length + 5)
                continue
            if len(buf) < length + 5:
                break
            out.append(self._request(bytes(buf[5 : length + 5])))
            del buf[: length + 5]
        return out

    def eof(self) -> list[Frame]:
        out: list[Frame] = []
        if self._buf and not self.ended:
            out.append(BadFrame("unixsock framing: the connection ended inside a frame"))
        self._buf.clear()
        self._dropping.left = 0
        return out

    def _request(self, body: bytes) -> Frame:
        """The JSON-RPC request an envelope asks for (or why it is not one)."""
        try:
            obj = loads(body)
        except ValueError as exc:
            return BadFrame(f"the envelope is not JSON: {exc}")
        if not isinstance(obj, dict):
            return BadFrame("the envelope is not a JSON object")
        env = {str(k).lower(): v for k, v in obj.items()}  # (Go: case-insensitive; the last wins)
        cmd, args, respond, close = (env.get(k) for k in ("cmd", "args", "respond", "close"))
        for key, value, kind in (("cmd", cmd, str), ("args", args, dict), ("respond", respond, bool),
                                 ("close", close, bool)):  # fmt: skip
            if value is not None and not isinstance(value, kind):
                return BadFrame(f'envelope: "{key}" is {type(value).__name__}, not {kind.__name__}')
        self.ended = bool(close)
        request: dict[str, Any] = {"jsonrpc": "2.0", "method": cmd or ""}
        if args is not None:
            request["params"] = args
        if respond:
            request["id"] = self._next_id
            self._waiting[self._next_id] = _Envelope(cmd or "", args, bool(close))
            self._next_id += 1
        return dumps(request)

    def encode(self, answers: list[bytes]) -> bytes:
        """Each answer as the reply envelope of its request; pushes have no place here."""
        out = []
        for answer in answers:
            obj = loads(answer)
            if not isinstance(obj, dict) or "method" in obj:  # (a batch cannot come from here)
                continue
            rid = obj.get("id")
            env = self._waiting.pop(rid, _ZERO) if isinstance(rid, int) else _ZERO
            out.append(frame(reply_envelope(env.cmd, env.args, env.close, obj)))
        return b"".join(out)


def reply_envelope(cmd: str, args: Any, close: bool, answer: dict[str, Any]) -> bytes:
    """The Go server's reply body for a JSON-RPC ``answer`` (see the module docstring)."""
    payload: Any = ""
    if "error" in answer:
        status, error = b"failure", answer["error"]
        text, data = str(error.get("message", "")), error.get("data")
        if data is not None and ErrorCode.is_reserved(error.get("code", 0)):
            text = f"{text}: {data if isinstance(data, str) else go_dumps(data).decode()}"
        elif data is not None:  # Response.fail(error, data=...): its payload
            payload = data
        error = text
    else:
        status, error, payload = b"success", "", answer.get("result")
    if not isinstance(payload, str):
        payload = "" if payload is None and status == b"failure" else go_dumps(payload).decode()
    return (
        b'{"cmd":' + go_dumps(cmd) + b',"args":' + go_dumps(args, float64=True)
        + b',"response":{"status":"' + status + b'","error":' + go_dumps(error)
        + b',"payload":' + go_dumps(payload) + b'},"respond":true,"close":'
        + (b"true}" if close else b"false}")
    )  # fmt: skip


def go_dumps(value: Any, *, float64: bool = False) -> bytes:
    """``value`` as Go's ``json.Marshal`` writes it: map keys sorted, ``<>&`` escaped, floats
    in Go's format; ``float64``: integers too, as a Go ``interface{}`` holds them."""
    if type(value) is str:  # (the envelope's cmd, error and payload: most of a reply)
        return _go_str(value).encode()
    return "".join(_go(value, float64)).encode()


def _go(value: Any, float64: bool) -> list[str]:
    if value is None:
        return ["null"]
    if value is True or value is False:
        return ["true" if value else "false"]
    if isinstance(value, int):
        return [_go_float(float(value)) if float64 and abs(value) < 2**1023 else str(value)]
    if isinstance(value, float):
        return [_go_float(value)]
    if isinstance(value, str):
        return [_go_str(value)]
    out: list[str] = []
    if isinstance(value, dict):
        out.append("{")
        for i, key in enumerate(sorted(value)):
            out += [",", *_go(str(key), False), ":"] if i else [*_go(str(key), False), ":"]
            out += _go(value[key], float64)
        out.append("}")
        return out
    out.append("[")
    for i, item in enumerate(value):
        if i:
            out.append(",")
        out += _go(item, float64)
    out.append("]")
    return out


def _go_str(text: str) -> str:
    if _GO_SPECIAL.search(text) is None:
        return f'"{text}"'
    return _GO_ESCAPES.sub(_go_escape, json.dumps(text, ensure_ascii=False))


def _go_escape(m: re.Match[str]) -> str:
    pair = m.group(1)
    if pair is None:
        return _GO_CHAR[m.group(2)]
    return _GO_CHAR.get(pair, m.group(0))


@functools.cache
def _decimal() -> type[Decimal]:
    """``decimal.Decimal``, imported by the first float a Go-framed answer carries: no other
    framing needs it (its import: ~0.25 MiB of the server's RSS, 8 ms)."""
    from decimal import Decimal

    return Decimal


def _go_float(f: float) -> str:
    """strconv's shortest form, as encoding/json uses it: fixed between 1e-6 and 1e21."""
    if f == 0:
        return "-0" if str(f).startswith("-") else "0"
    d = _decimal()(repr(f))
    if 1e-6 <= abs(f) < 1e21:
        return format(d.normalize(), "f")
    return format(d, "e").replace("E", "e")
