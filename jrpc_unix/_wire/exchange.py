"""One sent message waiting for its answers, and what a client makes of them once they are in.

An :class:`Exchange` is a call, a batch holding at least one call, or an ``rpc.subscribe``. The
conversation fills in its outcomes as answers are read; the client that sent it reads them
through the methods here, so both clients (and any later driver) say the same thing the same
way: results in call order, the seed-style :class:`~jrpc_unix.Response`, the subscription's
feed, progress reports handed to the call's callback.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

from .._errors import ErrorCode, ProtocolError, RpcError

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    from .._response import Response
    from .feeds import Feed

__all__ = ["Exchange", "Progress", "check_answer", "error_of"]

#: Called as ``progress(done, total, message)`` for each progress report of a call.
if TYPE_CHECKING:
    Progress: TypeAlias = Callable[[Any, Any, Any], object]
else:
    Progress = Callable[[object, object, object], object]


class Exchange:
    """A sent message waiting for its answers; ``outcomes`` follow the calls' order."""

    __slots__ = ("feed", "ids", "keeps_events", "label", "outcomes", "progress", "raw", "reports", "topic")

    def __init__(
        self,
        label: str,
        ids: list[int],
        *,
        progress: Progress | None = None,
        topic: str | None = None,
        keeps_events: bool = True,
    ) -> None:
        self.label = label
        self.ids = ids
        self.outcomes: dict[int, Any] = {}  # id -> result, or an RpcError
        self.raw: list[bytes] = []  # the answer line(s), for --raw and traces
        self.progress = progress
        #: Progress reports not yet handed to ``progress``, oldest first (None: the caller did
        #: not ask). :meth:`hand_on_reports` pops each one as it calls back, so a call with a
        #: million reports holds only those of the latest read (issue 9).
        self.reports: collections.deque[dict[str, Any]] | None = None
        if progress is not None:
            self.reports = collections.deque()
        self.topic = topic  # an rpc.subscribe exchange: the topic (its feed opens on the answer)
        #: False: the feed is the client's own (progress reports for its calls), nobody reads it.
        self.keeps_events = keeps_events
        self.feed: Feed | None = None

    @property
    def done(self) -> bool:
        return len(self.outcomes) == len(self.ids)

    def ready(self) -> bool:
        """Whether its caller has something to do: every answer is in, or progress reports wait."""
        return len(self.outcomes) == len(self.ids) or bool(self.reports)

    def results(self) -> list[Any]:
        """Results in call order; a failed call's place holds its RpcError (not raised)."""
        return [self.outcomes[i] for i in self.ids]

    def result(self) -> Any:
        """The single call's result, or raise its RpcError."""
        value = self.outcomes[self.ids[0]]
        if isinstance(value, RpcError):
            raise value
        return value

    def response(self) -> Response:
        """Seed compatibility (``send()``): the call's outcome as a Response.

        An application error (code outside the reserved range) is ``Response.fail(message,
        code, data)``, as the Go original's ``Send`` returned FAIL; protocol errors (unknown
        method, bad params, internal error...) have no Response form and are raised.
        """
        from .._response import Response  # only seed-style callers pay for importing it

        outcome = self.outcomes[self.ids[0]]
        if isinstance(outcome, RpcError):
            if ErrorCode.is_reserved(outcome.code):
                raise outcome
            return Response.fail(outcome.message, code=outcome.code, data=outcome.data)
        return Response.ok(outcome)

    def subscribed(self) -> Feed:
        """An ``rpc.subscribe``'s feed; raises its RpcError, or ProtocolError if the server
        answered without a subscription id."""
        result = self.result()
        if self.feed is None:
            raise ProtocolError(f"rpc.subscribe answered without a subscription id: {result!r:.200}")
        if isinstance(result, dict) and "truncated" in result:  # a resumed subscription
            self.feed.resumed = {k: v for k, v in result.items() if k not in ("subscription", "topic")}
        elif isinstance(result, dict) and type(result.get("seq")) is int and type(result.get("epoch")) is str:
            self.feed.seq, self.feed.epoch = result["seq"], result["epoch"]  # (a published topic)
        return self.feed

    def hand_on_reports(self) -> None:
        """Call ``progress(done, total, message)`` for each report not yet handed on, in order,
        forgetting each one first: memory stays flat however many reports a call makes."""
        reports, progress = self.reports, self.progress
        while reports and progress is not None:
            report = reports.popleft()
            progress(report.get("done"), report.get("total"), report.get("message"))

    def __repr__(self) -> str:
        return f"<Exchange {self.label} ids={self.ids} {'done' if self.done else 'waiting'}>"


def error_of(obj: dict[str, Any]) -> RpcError:
    """The RpcError an error answer (checked by :func:`check_answer`) stands for, read by
    jsonrpcclient (imported on the first error answer: not on a start that needs none)."""
    import jsonrpcclient

    answer = jsonrpcclient.parse(obj)
    assert isinstance(answer, jsonrpcclient.Error)
    return RpcError(answer.code, answer.message, answer.data)


def check_answer(obj: Any) -> None:
    """Raise ProtocolError unless ``obj`` is a JSON-RPC 2.0 response object."""
    if type(obj) is not dict or obj.get("jsonrpc") != "2.0" or "id" not in obj:
        raise ProtocolError(f"the server sent something that is not a JSON-RPC answer: {obj!r:.200}")
    if ("result" in obj) == ("error" in obj):
        raise ProtocolError(f"a JSON-RPC answer needs exactly one of result and error: {obj!r:.200}")
    if "error" in obj:
        error = obj["error"]
        well_formed = type(error) is dict and type(error.get("code")) is int
        if not well_formed or type(error.get("message")) is not str:
            raise ProtocolError(f"malformed error object in the server's answer: {obj!r:.200}")
