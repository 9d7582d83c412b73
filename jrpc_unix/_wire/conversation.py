"""Sans-IO client side of a JSON-RPC 2.0 conversation: requests out as bytes, answers in as bytes.

Both clients drive the same :class:`Conversation` (the blocking one over ``socket``, the trio one
over a stream), so ids, matching and error mapping behave identically. Requests are built by
jsonrpcclient (its dicts, our ids) and encoded by :mod:`._stdjson`. An :class:`Exchange` is one
message that expects answers: a call, or a batch holding at least one call. Answers are matched
by id; an answer nobody waits for any more (the caller was cancelled or timed out) is dropped.

Lines with a ``method`` and no ``id`` are notifications from the server. Those of a subscription
opened with :meth:`Conversation.subscribe` go to its feed, and progress reports to the waiting
call they name (:mod:`._feeds`), as each line is read; the rest are kept for the driver in
:attr:`Conversation.notifications`.

An error answer with ``"id": null`` cannot be matched (the server could not read the request's
id: too large, unparseable, refused connection). When exactly one exchange is waiting it must be
the one; otherwise it is kept in :attr:`Conversation.unattributed` for the driver to report.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable
from typing import Any, Final

import jsonrpcclient

from .._errors import ProtocolError, RpcError
from .feeds import CLOSED, UNSUBSCRIBED, Feed, Feeds
from .framing import TOO_LONG, LineSplitter
from .requests import Call, Notification, Notify, Params, encode, make_params, notification_obj, request_obj
from .stdjson import loads

__all__ = [
    "DEFAULT_MAX_ANSWER",
    "Call",
    "Conversation",
    "Exchange",
    "Notification",
    "Notify",
    "Params",
    "make_params",
]

#: Longest answer line a client accepts, in bytes (answers can be larger than requests).
DEFAULT_MAX_ANSWER: Final = 64 << 20


class Exchange:
    """A sent message waiting for its answers; ``outcomes`` follow the calls' order."""

    __slots__ = ("feed", "ids", "label", "outcomes", "raw", "reports", "topic", "visible")

    def __init__(
        self, label: str, ids: list[int], *, progress: bool = False, topic: str | None = None
    ) -> None:
        self.label = label
        self.ids = ids
        self.outcomes: dict[int, Any] = {}  # id -> result, or an RpcError
        self.raw: list[bytes] = []  # the answer line(s), for --raw and traces
        #: Progress reports for this call not yet handed to its callback, oldest first (None: the
        #: caller did not ask). The driver pops each one as it calls back, so a call with a
        #: million reports holds only those of the latest read.
        self.reports: collections.deque[dict[str, Any]] | None = collections.deque() if progress else None
        self.topic = topic  # an rpc.subscribe exchange: the topic (its feed opens on the answer)
        self.visible = True  # False: the feed is the client's own (progress), not a reader's
        self.feed: Feed | None = None

    @property
    def done(self) -> bool:
        return len(self.outcomes) == len(self.ids)

    def results(self) -> list[Any]:
        """Results in call order; a failed call's place holds its RpcError (not raised)."""
        return [self.outcomes[i] for i in self.ids]

    def result(self) -> Any:
        """The single call's result, or raise its RpcError."""
        value = self.outcomes[self.ids[0]]
        if isinstance(value, RpcError):
            raise value
        return value

    def __repr__(self) -> str:
        return f"<Exchange {self.label} ids={self.ids} {'done' if self.done else 'waiting'}>"


def _to_error(obj: dict[str, Any]) -> RpcError:
    answer = jsonrpcclient.parse(obj)
    assert isinstance(answer, jsonrpcclient.Error)
    return RpcError(answer.code, answer.message, answer.data)


def _check_answer(obj: Any) -> None:
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


class Conversation:
    """The client's half of one connection's JSON-RPC traffic; see the module docstring."""

    def __init__(self, max_message_size: int = DEFAULT_MAX_ANSWER) -> None:
        self._ids = itertools.count(1)
        self._splitter = LineSplitter(max_message_size)
        self._waiting: dict[int, Exchange] = {}  # call id -> its exchange
        self._orphans: set[int] = set()  # ids of rpc.subscribe calls abandoned before the answer
        self.max_message_size = max_message_size
        #: Answers that matched nobody (late answers after a cancel or a timeout).
        self.dropped = 0
        #: Error answers with a null id that no single waiting exchange could claim.
        self.unattributed: list[RpcError] = []
        #: Notifications the server sent that no subscription of ours claimed, not yet taken.
        self.notifications: list[Notification] = []
        #: This connection's subscriptions (events routed as they are read).
        self.feeds = Feeds()
        #: Messages the driver should send on its own (ending subscriptions nobody waited for).
        self.outgoing: list[bytes] = []

    # -- outgoing --------------------------------------------------------------------------

    def call(self, method: str, params: Params = None, *, progress: bool = False) -> tuple[Exchange, bytes]:
        """A call: the exchange to wait on, and the bytes to send.

        With ``progress``, reports for this call collect in ``exchange.reports`` (the caller
        must have subscribed the connection to the ``progress`` topic: :meth:`subscribe`).
        """
        rid = next(self._ids)
        data = encode(request_obj(method, params, rid), repr(method))
        return self._open(Exchange(repr(method), [rid], progress=progress)), data

    def subscribe(
        self, topic: str, params: dict[str, Any] | None = None, *, visible: bool = True
    ) -> tuple[Exchange, bytes]:
        """Call ``rpc.subscribe``; its feed opens as soon as the answer is read (``exchange.feed``),
        so events right behind the answer already land in it. ``visible=False``: a feed only for
        progress reports of this client's calls, keeping no events."""
        rid = next(self._ids)
        data = encode(request_obj("rpc.subscribe", {**(params or {}), "topic": topic}, rid), repr(topic))
        exchange = Exchange(f"the subscription to {topic!r}", [rid], topic=topic)
        exchange.visible = visible
        return self._open(exchange), data

    def unsubscribe(self, feed: Feed) -> bytes:
        """End ``feed`` here at once (late events are dropped) and the bytes telling the server.

        ``rpc.unsubscribe`` goes as a notification: there is no answer to wait for, and as a
        barrier it takes effect before anything sent after it on the connection.
        """
        self.feeds.end(feed, UNSUBSCRIBED)
        return self.notify("rpc.unsubscribe", {"subscription": feed.id})

    @property
    def progress_subscribed(self) -> bool:
        """Whether the server sends this connection's progress reports to a feed of ours."""
        return self.feeds.progress is not None

    def notify(self, method: str, params: Params = None) -> bytes:
        """A notification: just the bytes to send; no answer will come."""
        return encode(notification_obj(method, params), repr(method))

    def batch(self, items: Iterable[Call]) -> tuple[Exchange | None, bytes]:
        """A batch: its exchange (None if it holds only notifications) and the bytes to send."""
        objs: list[dict[str, Any]] = []
        ids: list[int] = []
        for item in items:
            if not isinstance(item, Call):
                raise TypeError(f"batch items are Call(...) or Notify(...), not {item!r:.80}")
            if item.is_notification:
                objs.append(notification_obj(item.method, item.params))
            else:
                rid = next(self._ids)
                ids.append(rid)
                objs.append(request_obj(item.method, item.params, rid))
        if not objs:
            raise ValueError("a batch needs at least one call or notification")
        data = encode(objs, f"a batch of {len(objs)}")
        if not ids:
            return None, data
        return self._open(Exchange(f"a batch of {len(objs)}", ids)), data

    def _open(self, exchange: Exchange) -> Exchange:
        for rid in exchange.ids:
            self._waiting[rid] = exchange
        return exchange

    def abandon(self, exchange: Exchange, *, sent: bool = True) -> None:
        """Stop waiting for ``exchange`` (cancelled, timed out): its late answers are dropped.

        A subscription whose answer comes late is ended at once (see :attr:`outgoing`)."""
        for rid in exchange.ids:
            if self._waiting.get(rid) is exchange:
                del self._waiting[rid]
                if sent and exchange.topic is not None and not exchange.done:
                    self._orphans.add(rid)

    @property
    def waiting(self) -> list[Exchange]:
        """The exchanges still waiting for answers, oldest first."""
        return list(dict.fromkeys(self._waiting.values()))

    def reset(self) -> list[Exchange]:
        """The connection is gone: forget partial input, end every subscription, and return
        the exchanges left waiting."""
        left = self.waiting
        self._waiting.clear()
        self._orphans.clear()
        self.outgoing.clear()
        self.feeds.end_all(CLOSED)
        self._splitter = LineSplitter(self.max_message_size)
        return left

    # -- incoming --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Exchange]:
        """Feed received bytes; return the exchanges they completed. ProtocolError is fatal."""
        return self._lines(self._splitter.feed(data))

    def receive_eof(self) -> list[Exchange]:
        """The server closed its side; a final unterminated answer still counts."""
        return self._lines(self._splitter.eof())

    def _lines(self, lines: list[Any]) -> list[Exchange]:
        completed: list[Exchange] = []
        for line in lines:
            if line is TOO_LONG:
                limit = self.max_message_size
                raise ProtocolError(f"the server sent an answer longer than the client's {limit}-byte limit")
            try:
                obj = loads(line)
            except ValueError as exc:
                raise ProtocolError(f"the server sent a line that is not JSON ({exc})") from None
            if type(obj) is dict and "id" not in obj and "method" in obj:
                self._notification(obj)
                continue
            answers = obj if type(obj) is list else [obj]
            touched: list[Exchange] = []
            for answer in answers:
                _check_answer(answer)
                exchange = self._settle(answer)
                if exchange is not None and exchange not in touched:
                    touched.append(exchange)
            for exchange in touched:
                exchange.raw.append(line)
                if exchange.done:
                    self.abandon(exchange)
                    completed.append(exchange)
        return completed

    def _notification(self, obj: dict[str, Any]) -> None:
        method, params = obj["method"], obj.get("params")
        if obj.get("jsonrpc") != "2.0" or type(method) is not str:
            raise ProtocolError(f"the server sent a malformed notification: {obj!r:.200}")
        if not self.feeds.route(method, params, self._waiting.get):
            self.notifications.append(Notification(method, params))

    def take_notifications(self) -> list[Notification]:
        """The notifications received since the last call, oldest first."""
        taken, self.notifications = self.notifications, []
        return taken

    def _settle(self, answer: dict[str, Any]) -> Exchange | None:
        rid = answer["id"]
        if rid is None:
            return self._settle_unmatched(_to_error(answer) if "error" in answer else None)
        exchange = self._waiting.get(rid) if type(rid) is int else None
        if exchange is None or rid in exchange.outcomes:
            self.dropped += 1
            if rid in self._orphans:
                self._orphaned(rid, answer.get("result"))
            return None
        if "error" in answer:
            exchange.outcomes[rid] = _to_error(answer)
            return exchange
        result = exchange.outcomes[rid] = answer["result"]
        if exchange.topic is not None:
            sub_id = result.get("subscription") if type(result) is dict else None
            if type(sub_id) is str:
                exchange.feed = self.feeds.open(sub_id, exchange.topic, exchange.visible)
        return exchange

    def _orphaned(self, rid: int, result: Any) -> None:
        """A subscription nobody waits for any more: end it on the server, drop its events."""
        self._orphans.discard(rid)
        sub_id = result.get("subscription") if type(result) is dict else None
        if type(sub_id) is str:
            self.feeds.forget(sub_id)
            self.outgoing.append(self.notify("rpc.unsubscribe", {"subscription": sub_id}))

    def _settle_unmatched(self, error: RpcError | None) -> Exchange | None:
        if error is None:  # a result with a null id answers nothing we sent
            self.dropped += 1
            return None
        waiting = self.waiting
        if len(waiting) != 1:
            self.unattributed.append(error)
            return None
        exchange = waiting[0]
        for rid in exchange.ids:
            exchange.outcomes.setdefault(rid, error)
        return exchange
