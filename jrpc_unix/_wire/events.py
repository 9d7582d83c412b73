"""What the client's conversation reports after reading: events, h11-style.

:meth:`~.conversation.Conversation.receive_data` returns a list of these, in the order the lines
that caused them were read, and each driver's read loop is one ``match`` saying what it does with
each: wake a caller, wake a subscription's reader, wake a notification waiter, write bytes. The
state they point at (an exchange's outcomes, a feed's events, the inbox) is already up to date.

A driver that waits by polling that state (the blocking client) may ignore the wake-ups; every
driver must write :class:`MustSend`'s bytes.

Small hand-written classes, not dataclasses: ``import dataclasses`` pulls in ``inspect`` and
would cost the command line's cold start more than all of these (specs/performance.md).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's import is a share of a CLI start (specs/performance.md)
if TYPE_CHECKING:
    from typing import Any, ClassVar

    from .exchange import Exchange
    from .feeds import Feed
    from .requests import Notification

__all__ = ["Answered", "Event", "FeedChanged", "MustSend", "NotificationArrived", "ReportsArrived"]


class _Event:
    """One field, compared by value; ``__match_args__`` names it for ``case Answered(exchange)``."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str]]

    def _value(self) -> Any:
        return getattr(self, self.__match_args__[0])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Event)
        return bool(self._value() == other._value())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._value()!r})"


class Answered(_Event):
    """Every answer of ``exchange`` is in (results, errors, or a refusal): wake its caller."""

    __slots__ = ("exchange",)
    __match_args__ = ("exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange


class ReportsArrived(_Event):
    """Progress reports for ``exchange``'s callback wait in it: wake its caller to hand them on
    (:meth:`~.exchange.Exchange.hand_on_reports`)."""

    __slots__ = ("exchange",)
    __match_args__ = ("exchange",)

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange


class FeedChanged(_Event):
    """``feed`` got events or a dropped count, or ended: wake its reader."""

    __slots__ = ("feed",)
    __match_args__ = ("feed",)

    def __init__(self, feed: Feed) -> None:
        self.feed = feed


class NotificationArrived(_Event):
    """A notification no subscription claimed; it is kept in the conversation's bounded inbox."""

    __slots__ = ("notification",)
    __match_args__ = ("notification",)

    def __init__(self, notification: Notification) -> None:
        self.notification = notification


class MustSend(_Event):
    """Bytes the driver must write on its own, without waiting for them (``rpc.unsubscribe`` of a
    subscription whose caller gave up before its answer came)."""

    __slots__ = ("data",)
    __match_args__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


#: Everything :meth:`~.conversation.Conversation.receive_data` may return.
Event = Answered | ReportsArrived | FeedChanged | NotificationArrived | MustSend
