"""Sans-IO client side of a JSON-RPC 2.0 conversation: requests out as bytes, answers in as events.

Every client drives the same :class:`Conversation`, so ids, matching, error mapping and what the
server pushes behave identically. Requests are jsonrpcclient's objects (:mod:`.requests`, our ids),
encoded by :mod:`.stdjson`. An :class:`~.exchange.Exchange` is one message that expects answers:
a call, or a batch holding at least one call. Answers are matched by id; an answer nobody waits
for any more (the caller was cancelled or timed out) is dropped and counted.

:meth:`Conversation.receive_data` returns :mod:`.events` in the order their lines were read, as
h11 does: an exchange ``Answered``, progress ``ReportsArrived`` for a call's callback, a
``FeedChanged``, a ``NotificationArrived`` (kept in the bounded :attr:`Conversation.inbox`), bytes
the driver ``MustSend``. A line the server should never send raises ProtocolError, which ends
the connection.

An error answer with ``"id": null`` cannot be matched (the server could not read the request's
id: too large, unparseable, refused connection). When exactly one exchange is waiting it must be
the one; otherwise the calls that end when the connection closes quote it
(:meth:`Conversation.closed_error`).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable

from .._errors import ConnectionClosedError, ProtocolError, RpcError
from .events import Answered, Event, FeedChanged, MustSend, NotificationArrived, ReportsArrived
from .exchange import Exchange, Progress, check_answer, error_of
from .feeds import CLOSED, PROGRESS, UNSUBSCRIBED, Feed, Feeds
from .framing import TOO_LONG, LineSplitter
from .requests import Call, Notification, Notify, Params, encode, make_params, notification_obj, request_obj
from .stdjson import loads

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Any, Final

__all__ = [
    "DEFAULT_MAX_ANSWER",
    "MAX_KEPT_NOTIFICATIONS",
    "Call",
    "Conversation",
    "Exchange",
    "Notification",
    "Notify",
    "Params",
    "Progress",
    "make_params",
]

#: Longest answer line a client accepts, in bytes (answers can be larger than requests).
DEFAULT_MAX_ANSWER: Final = 64 << 20
#: Notifications kept in the inbox until taken; beyond it the oldest go.
MAX_KEPT_NOTIFICATIONS: Final = 10_000
_PUSHED = ("rpc.event", "rpc.dropped")


class Conversation:
    """The client's half of one connection's JSON-RPC traffic; see the module docstring.

    It outlives a connection: after :meth:`connection_lost` it goes on over the next one, and
    ids keep counting, so nothing from an old connection can match a new call.
    """

    def __init__(self, max_message_size: int = DEFAULT_MAX_ANSWER) -> None:
        self._ids = itertools.count(1)
        self._splitter = LineSplitter(max_message_size)
        self._waiting: dict[int, Exchange] = {}  # call id -> its exchange
        self._orphans: set[int] = set()  # ids of rpc.subscribe calls abandoned before the answer
        self._refusal: RpcError | None = None  # the last null-id error no exchange could claim
        self._refused: RpcError | None = None  # one that came while no exchange waited
        self.max_message_size = max_message_size
        #: Answers that matched nobody (late answers after a cancel or a timeout).
        self.dropped = 0
        #: Notifications no subscription claimed, oldest first, until a driver takes them.
        self.inbox: collections.deque[Notification] = collections.deque(maxlen=MAX_KEPT_NOTIFICATIONS)
        #: This connection's subscriptions (events routed as they are read).
        self.feeds = Feeds()

    # -- outgoing --------------------------------------------------------------------------

    def call(
        self, method: str, params: Params = None, *, progress: Progress | None = None
    ) -> tuple[Exchange, bytes]:
        """A call: the exchange to wait on, and the bytes to send.

        With ``progress``, reports for this call collect in the exchange until handed on
        (:meth:`~.exchange.Exchange.hand_on_reports`); the connection must be subscribed to
        ``progress`` first (:meth:`subscribe_progress`).
        """
        rid = next(self._ids)
        label = repr(method)
        data = encode(request_obj(method, params, rid), label)
        exchange = self._waiting[rid] = Exchange(label, [rid], progress=progress)
        return exchange, data

    def subscribe(
        self, topic: str, params: dict[str, Any] | None = None, *, keeps_events: bool = True
    ) -> tuple[Exchange, bytes]:
        """Call ``rpc.subscribe``; its feed opens as soon as the answer is read (``exchange.feed``),
        so events right behind the answer already land in it. ``keeps_events=False``: a feed
        only for progress reports of this client's calls."""
        rid = next(self._ids)
        data = encode(request_obj("rpc.subscribe", {**(params or {}), "topic": topic}, rid), repr(topic))
        label = f"the subscription to {topic!r}"
        return self._open(Exchange(label, [rid], topic=topic, keeps_events=keeps_events)), data

    @property
    def progress_subscribed(self) -> bool:
        """Whether the server sends this connection's progress reports to a feed of ours."""
        return self.feeds.progress is not None

    def subscribe_progress(self) -> tuple[Exchange, bytes]:
        """Subscribe the connection to its progress reports (drivers do it once, when a call
        first asks for progress). Its error (a server without progress) only means no reports,
        so nobody needs to raise it."""
        return self.subscribe(PROGRESS, keeps_events=False)

    def unsubscribe(self, feed: Feed) -> bytes:
        """End ``feed`` here at once (late events are dropped) and the bytes telling the server.

        ``rpc.unsubscribe`` goes as a notification: there is no answer to wait for, and as a
        barrier it takes effect before anything sent after it on the connection.
        """
        self.feeds.end(feed, UNSUBSCRIBED)
        return self.notify("rpc.unsubscribe", {"subscription": feed.id})

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

    def abandon(self, exchange: Exchange, *, sent: bool = True) -> bytes:
        """Stop waiting for ``exchange`` (its caller was cancelled): late answers are dropped, a
        subscription answered later is ended at once. Returns the ``rpc.cancel`` notifications
        that ask the server to stop its unanswered calls (nothing if it was never ``sent``)."""
        self._forget(exchange)
        if not sent:
            return b""
        unanswered = [rid for rid in exchange.ids if rid not in exchange.outcomes]
        if exchange.topic is not None:
            self._orphans.update(unanswered)
        return b"".join(self.notify("rpc.cancel", {"id": rid}) for rid in unanswered)

    def _forget(self, exchange: Exchange) -> None:
        for rid in exchange.ids:
            if self._waiting.get(rid) is exchange:
                del self._waiting[rid]

    @property
    def waiting(self) -> list[Exchange]:
        """The exchanges still waiting for answers, oldest first."""
        return list(dict.fromkeys(self._waiting.values()))

    def connection_lost(self) -> list[FeedChanged]:
        """The connection is gone: forget partial input and the exchanges waiting (their callers
        learn it from their driver), and end every subscription (their readers: the events)."""
        self._waiting.clear()
        self._orphans.clear()
        self._splitter = LineSplitter(self.max_message_size)
        return [FeedChanged(feed) for feed in self.feeds.end_all(CLOSED)]

    @property
    def refused(self) -> RpcError | None:
        """The error answer that came while nothing was asked: the server refused the
        connection (an overloaded server says why, then closes)."""
        return self._refused

    def closed_error(self, message: str) -> ConnectionClosedError:
        """ConnectionClosedError(``message``), quoting what the server said in an error answer
        no call could claim (why it refused us), if it said anything."""
        if self._refusal is not None:
            message = f"{message} (the server said: {self._refusal})"
        return ConnectionClosedError(message)

    # -- incoming --------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed received bytes; what they caused, in order. ProtocolError is fatal."""
        return self._lines(self._splitter.feed(data))

    def receive_eof(self) -> list[Event]:
        """The server closed its side; a final unterminated answer still counts."""
        return self._lines(self._splitter.eof())

    def _lines(self, lines: list[Any]) -> list[Event]:
        events: list[Event] = []
        for line in lines:
            if line is TOO_LONG:
                limit = self.max_message_size
                raise ProtocolError(f"the server sent an answer longer than the client's {limit}-byte limit")
            try:
                obj = loads(line)
            except ValueError as exc:
                raise ProtocolError(f"the server sent a line that is not JSON ({exc})") from None
            if type(obj) is dict:
                if "id" not in obj and "method" in obj:
                    self._notification(obj, events)
                    continue
                check_answer(obj)  # the common case, one answer: no list of the exchanges it touched
                exchange = self._settle(obj, events)
                if exchange is not None:
                    exchange.raw.append(line)
                    if exchange.done:
                        self._forget(exchange)
                        events.append(Answered(exchange))
                continue
            answers = obj if type(obj) is list else [obj]
            touched: list[Exchange] = []
            for answer in answers:
                check_answer(answer)
                exchange = self._settle(answer, events)
                if exchange is not None and exchange not in touched:
                    touched.append(exchange)
            for exchange in touched:
                exchange.raw.append(line)
                if exchange.done:
                    self._forget(exchange)
                    events.append(Answered(exchange))
        return events

    def _notification(self, obj: dict[str, Any], events: list[Event]) -> None:
        method, params = obj["method"], obj.get("params")
        if obj.get("jsonrpc") != "2.0" or type(method) is not str:
            raise ProtocolError(f"the server sent a malformed notification: {obj!r:.200}")
        if method in _PUSHED and type(params) is dict and self._pushed(method, params, events):
            return
        note = Notification(method, params)
        self.inbox.append(note)
        events.append(NotificationArrived(note))

    def _pushed(self, method: str, params: dict[str, Any], events: list[Event]) -> bool:
        """Deliver a subscription's event or dropped count; False if it is none of ours."""
        sub_id = params.get("subscription")
        if type(sub_id) is not str:
            return False
        feed = self.feeds.by_id.get(sub_id)
        if feed is None:
            return self.feeds.ended_lately(sub_id)
        if method == "rpc.dropped":
            count = params.get("count")
            if type(count) is int and count > 0:
                feed.dropped += count
                events.append(FeedChanged(feed))
            return True
        data = params.get("data")
        if feed is self.feeds.progress and type(data) is dict:
            rid = data.get("id")
            call = self._waiting.get(rid) if type(rid) is int else None
            if call is not None and call.reports is not None:
                call.reports.append(data)
                events.append(ReportsArrived(call))
        if feed.keeps_events:
            seq, epoch = params.get("seq"), params.get("epoch")
            if type(seq) is int and type(epoch) is str:
                feed.seq, feed.epoch = seq, epoch
            feed.add(data)
            events.append(FeedChanged(feed))
        return True

    def _settle(self, answer: dict[str, Any], events: list[Event]) -> Exchange | None:
        rid = answer["id"]
        if rid is None:
            return self._settle_unmatched(error_of(answer) if "error" in answer else None)
        exchange = self._waiting.get(rid) if type(rid) is int else None
        if exchange is None or rid in exchange.outcomes:
            self.dropped += 1
            if rid in self._orphans:
                self._orphaned(rid, answer.get("result"), events)
            return None
        if "error" in answer:
            exchange.outcomes[rid] = error_of(answer)
            return exchange
        result = exchange.outcomes[rid] = answer["result"]
        if exchange.topic is not None:
            sub_id = result.get("subscription") if type(result) is dict else None
            if type(sub_id) is str:
                exchange.feed = self.feeds.open(sub_id, exchange.topic, exchange.keeps_events)
        return exchange

    def _orphaned(self, rid: int, result: Any, events: list[Event]) -> None:
        """A subscription nobody waits for any more: end it on the server, drop its events."""
        self._orphans.discard(rid)
        sub_id = result.get("subscription") if type(result) is dict else None
        if type(sub_id) is str:
            self.feeds.forget(sub_id)
            events.append(MustSend(self.notify("rpc.unsubscribe", {"subscription": sub_id})))

    def _settle_unmatched(self, error: RpcError | None) -> Exchange | None:
        if error is None:  # a result with a null id answers nothing we sent
            self.dropped += 1
            return None
        waiting = self.waiting
        if len(waiting) != 1:
            self._refusal = error
            if not waiting:
                self._refused = error
            return None
        exchange = waiting[0]
        for rid in exchange.ids:
            exchange.outcomes.setdefault(rid, error)
        return exchange
