"""The audit trail: who called what at ``operate`` or ``admin`` level, and every denial.

Each record (time, peer uid/gid/pid and executable, connection, method, params with the
method's declared ``secret`` params redacted, outcome, duration) goes into a bounded ring that
``rpc.audit`` shows, and as one line on the ``jrpc_unix.audit`` logger (denials throttled:
any client can cause them). ``read`` calls are never audited and pay nothing: the audited
methods leave the fast path instead (:meth:`Audit.fast_specs`), and the general path looks up
one set. On by default when the server has a :class:`~jrpc_unix.Policy` (without one every
caller is ``admin``, and every call would be a record); ``Server(audit=...)`` decides.
"""

from __future__ import annotations

import collections
import json
import logging
import time
from typing import Any

from .._errors import ErrorCode, RpcError
from .._service.access import Access, Peer
from .._service.dispatch import Dispatcher
from .._service.methods import MethodSpec
from .._service.throttle import Throttle
from .._wire.messages import ErrorAnswer, Request
from .slowlog import describe_peer, iso_time

__all__ = ["Audit", "audit_methods"]

log = logging.getLogger("jrpc_unix.audit")
throttled = Throttle(log)
SIZE = 1000
REDACTED = "***"


def _redact(spec: MethodSpec | None, params: Any) -> Any:
    if spec is None or not spec.secret or params is None:
        return params
    if isinstance(params, dict):
        return {k: REDACTED if k in spec.secret else v for k, v in params.items()}
    names = list(spec.signature.parameters)
    return [REDACTED if i < len(names) and names[i] in spec.secret else v for i, v in enumerate(params)]


def _outcome(answer: bytes | ErrorAnswer | None) -> dict[str, Any]:
    if not isinstance(answer, ErrorAnswer):
        return {"outcome": "ok"}
    out: dict[str, Any] = {"outcome": answer.reason or "error"}
    if answer.line is not None:
        try:
            error = json.loads(answer.line)["error"]
            out["error"] = {"code": error["code"], "message": error["message"]}
        except (ValueError, KeyError, TypeError):
            pass
    return out


class Audit:
    """The ring of audit records, and which methods are audited."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        #: The method names whose calls are recorded (none when off; see :meth:`bind`).
        self.audited: frozenset[str] = frozenset()
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=SIZE)
        self._fast: dict[Access, dict[str, MethodSpec]] = {}
        self._dispatcher: Dispatcher | None = None
        self._peers: dict[Peer, dict[str, Any] | None] = {}

    def bind(self, dispatcher: Dispatcher) -> None:
        """The server's methods are known: audit those at ``operate`` level or above."""
        self._dispatcher = dispatcher
        if self.enabled:
            self.audited = frozenset(s.name for s in dispatcher.specs() if s.access >= Access.OPERATE)

    def fast_specs(self, level: Access) -> dict[str, MethodSpec]:
        """The dispatcher's fast path at ``level``, less the audited methods."""
        found = self._fast.get(level)
        if found is None:
            assert self._dispatcher is not None
            fast = self._dispatcher.fast_specs(level)
            found = self._fast[level] = {n: s for n, s in fast.items() if n not in self.audited}
        return found

    def call(
        self, req: Request, answer: bytes | ErrorAnswer | None, ns: int, peer: Peer | None, connection: int
    ) -> None:
        """Record an audited call's outcome."""
        record = self._record(req, peer, connection)
        record.update(_outcome(answer))
        record["duration_ms"] = round(ns / 1e6, 3) if ns else None
        self.records.append(record)
        if log.isEnabledFor(logging.INFO):  # (the encoding is most of a record's cost)
            log.info("%s", json.dumps(_shown(record), default=repr))

    def denied(self, method: str, params: Any, peer: Peer | None, connection: int, why: str) -> None:
        """Record a denial (of a call, a subscription, a cancel); logged throttled."""
        req = Request(method, params)
        record = self._record(req, peer, connection)
        record.update(outcome="denied", detail=why)
        self.records.append(record)
        if throttled.allow("denied"):
            log.warning("%s", json.dumps(_shown(record), default=repr))

    def _record(self, req: Request, peer: Peer | None, connection: int) -> dict[str, Any]:
        spec = self._dispatcher.spec(req.method) if self._dispatcher is not None else None
        return {
            "time": time.time(),  # (made readable when shown: most records are never read)
            "peer": self._peer(peer),
            "connection": connection,
            "method": req.method,
            "notification": req.is_notification,
            "params": _redact(spec, req.params),
        }

    def _peer(self, peer: Peer | None) -> dict[str, Any] | None:
        """The peer described once per process that calls (``/proc`` read once, not per call)."""
        if peer is None:
            return None
        found = self._peers.get(peer)
        if found is None:
            if len(self._peers) >= 1024:
                self._peers.clear()
            found = self._peers[peer] = describe_peer(peer)
        return found

    def newest(self, limit: int) -> list[dict[str, Any]]:
        out = [_shown(r) for r in list(self.records)[-limit:]] if limit else []
        out.reverse()
        return out


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "time": iso_time(record["time"])}


def audit_methods(audit: Audit) -> dict[str, MethodSpec]:
    def rpc_audit(limit: int = 50) -> list[dict[str, Any]]:
        """The newest audit records, newest first: operate/admin calls and every denial."""
        if type(limit) is not int or not 0 <= limit <= SIZE:
            raise RpcError(
                ErrorCode.INVALID_PARAMS, "Invalid params", f"limit must be an integer from 0 to {SIZE}"
            )
        return audit.newest(limit)

    return {"rpc.audit": MethodSpec.build("rpc.audit", rpc_audit, access=Access.ADMIN)}
