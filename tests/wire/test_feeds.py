"""What the server pushes, sans-IO (jrpc_unix._wire.feeds and the conversation's routing):
subscriptions' events, dropped counts, progress reports for calls, other notifications.

Each push is routed as its line is read and reported as an event (FeedChanged, ReportsArrived,
NotificationArrived, MustSend); the tests feed whole reads and single bytes alike.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers.client import dropped_line, error_line, event_line, result_line, sent

from jrpc_unix import ProtocolError, RpcError
from jrpc_unix._wire.conversation import MAX_KEPT_NOTIFICATIONS, Conversation, Notification
from jrpc_unix._wire.events import (
    Answered,
    Event,
    FeedChanged,
    MustSend,
    NotificationArrived,
    ReportsArrived,
)
from jrpc_unix._wire.feeds import MAX_KEPT_EVENTS, Feed


def subscribed(conv: Conversation, topic: str = "t", sub: str = "s1", **options: Any) -> Feed:
    exchange, _ = conv.subscribe(topic, **options)
    conv.receive_data(result_line(exchange.ids[0], {"subscription": sub, "topic": topic}))
    return exchange.subscribed()


def test_subscribe_sends_rpc_subscribe_with_the_topic_and_its_params() -> None:
    conv = Conversation()
    _, data = conv.subscribe("stats", {"interval": 0.5, "queue_size": 3})
    assert sent(data) == {
        "jsonrpc": "2.0",
        "method": "rpc.subscribe",
        "params": {"interval": 0.5, "queue_size": 3, "topic": "stats"},
        "id": 1,
    }


def test_events_right_behind_the_subscribe_answer_land_in_its_feed() -> None:
    """The answer and the first events in one read: routing happens line by line."""
    conv = Conversation()
    exchange, _ = conv.subscribe("t")
    chunk = result_line(1, {"subscription": "s7", "topic": "t"}) + event_line("s7", 1) + event_line("s7", 2)
    feed_events = conv.receive_data(chunk)
    feed = exchange.subscribed()
    assert feed_events == [Answered(exchange), FeedChanged(feed), FeedChanged(feed)]
    assert (feed.id, feed.topic, list(feed.events)) == ("s7", "t", [1, 2])
    assert not conv.inbox


def test_a_subscribe_answered_without_an_id_or_with_an_error_raises_when_opened() -> None:
    conv = Conversation()
    no_id, _ = conv.subscribe("t")
    refused, _ = conv.subscribe("u")
    conv.receive_data(result_line(1, {"topic": "t"}) + error_line(2, 7, "no"))
    with pytest.raises(ProtocolError, match=r"^rpc\.subscribe answered without a subscription id: \{'topic"):
        no_id.subscribed()
    with pytest.raises(RpcError, match=r"^\[7\] no$"):
        refused.subscribed()


def test_feeds_are_routed_by_subscription_and_the_rest_goes_to_the_inbox() -> None:
    conv = Conversation()
    a = subscribed(conv, "t", "s1")
    b = subscribed(conv, "u", "s2")
    events = conv.receive_data(event_line("s2", "b1") + event_line("s1", "a1") + event_line("s9", "other"))
    events += conv.receive_data(b'{"jsonrpc":"2.0","method":"hello","params":[1]}\n')
    assert (list(a.events), list(b.events)) == (["a1"], ["b1"])
    other = Notification("rpc.event", {"subscription": "s9", "topic": "t", "data": "other"})
    hello = Notification("hello", [1])
    assert events == [FeedChanged(b), FeedChanged(a), NotificationArrived(other), NotificationArrived(hello)]
    assert list(conv.inbox) == [other, hello]


def test_the_inbox_keeps_the_newest_notifications() -> None:
    conv = Conversation()
    line = b'{"jsonrpc":"2.0","method":"tick","params":[%d]}\n'
    conv.receive_data(b"".join(line % i for i in range(MAX_KEPT_NOTIFICATIONS + 5)))
    assert len(conv.inbox) == MAX_KEPT_NOTIFICATIONS
    assert conv.inbox[0] == Notification("tick", [5])


def test_a_feed_keeps_the_newest_events_and_counts_the_rest_as_dropped() -> None:
    conv = Conversation()
    feed = subscribed(conv)
    conv.receive_data(b"".join(event_line("s1", i) for i in range(MAX_KEPT_EVENTS + 3)))
    assert (len(feed.events), feed.events[0], feed.dropped) == (MAX_KEPT_EVENTS, 3, 3)


def test_dropped_notices_add_up_and_late_events_after_unsubscribe_are_dropped() -> None:
    conv = Conversation()
    feed = subscribed(conv)
    events = conv.receive_data(dropped_line("s1", 7) + event_line("s1", 8) + dropped_line("s1", 2))
    assert events == [FeedChanged(feed)] * 3
    assert conv.receive_data(dropped_line("s1", 0) + dropped_line("s1", -1)) == []
    assert (feed.dropped, list(feed.events)) == (9, [8])
    assert sent(conv.unsubscribe(feed)) == {
        "jsonrpc": "2.0",
        "method": "rpc.unsubscribe",
        "params": {"subscription": "s1"},
    }
    assert feed.ended == "unsubscribed"
    assert conv.receive_data(event_line("s1", 9) + dropped_line("s1", 1)) == []
    assert (list(feed.events), feed.dropped) == ([], 9), "unread events go too"
    assert not conv.inbox


def test_progress_reports_go_to_the_call_they_name() -> None:
    conv = Conversation()
    assert not conv.progress_subscribed
    exchange, data = conv.subscribe_progress()
    assert sent(data)["params"] == {"topic": "progress"}
    conv.receive_data(result_line(1, {"subscription": "s1", "topic": "progress"}))
    assert conv.progress_subscribed
    assert not exchange.subscribed().keeps_events
    seen: list[tuple[Any, Any, Any]] = []
    mine, _ = conv.call("work", [3], progress=lambda *report: seen.append(report))
    other, _ = conv.call("work", [1])
    reports = [event_line("s1", {"id": 2, "done": i, "total": 3}, "progress") for i in (1, 2)]
    reports.append(event_line("s1", {"id": 3, "done": 1}, "progress"))  # its caller did not ask
    reports.append(event_line("s1", {"id": [2], "done": 1}, "progress"))  # no call has that id
    stream = b"".join(reports)
    events: list[Event] = []
    for i in range(len(stream)):
        events += conv.receive_data(stream[i : i + 1])
    assert events == [ReportsArrived(mine), ReportsArrived(mine)]
    assert other.reports is None
    assert not conv.inbox
    mine.hand_on_reports()
    assert seen == [(1, 3, None), (2, 3, None)]
    assert mine.reports is not None
    assert not mine.reports, "handed on and forgotten"
    assert conv.receive_data(result_line(2, "done") + event_line("s1", {"id": 2, "done": 3}, "progress")) == [
        Answered(mine)
    ]
    assert mine.result() == "done"
    mine.hand_on_reports()
    assert len(seen) == 2, "a report for a finished call is dropped"


def test_a_visible_progress_subscription_also_keeps_the_reports_as_events() -> None:
    conv = Conversation()
    feed = subscribed(conv, "progress")
    mine, _ = conv.call("work", progress=lambda *report: None)
    report = {"id": 2, "done": 1}
    events = conv.receive_data(event_line("s1", report, "progress"))
    assert events == [ReportsArrived(mine), FeedChanged(feed)]
    assert list(feed.events) == [report]


def test_a_lost_connection_ends_every_feed_and_the_progress_subscription() -> None:
    conv = Conversation()
    feed = subscribed(conv, "progress")
    other = subscribed(conv, "t", "s2")
    conv.receive_data(event_line("s2", "kept"))
    assert conv.connection_lost() == [FeedChanged(feed), FeedChanged(other)]
    assert (feed.ended, other.ended, list(other.events)) == ("closed", "closed", ["kept"])
    assert not conv.progress_subscribed
    assert conv.connection_lost() == []


def test_a_subscription_answered_after_its_caller_gave_up_is_ended() -> None:
    conv = Conversation()
    exchange, _ = conv.subscribe("t")
    assert sent(conv.abandon(exchange))["method"] == "rpc.cancel"
    events = conv.receive_data(result_line(1, {"subscription": "s4"}) + event_line("s4", 1))
    unsubscribe = {"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"subscription": "s4"}}
    assert len(events) == 1
    assert isinstance(events[0], MustSend)
    assert sent(events[0].data) == unsubscribe
    assert (conv.dropped, list(conv.inbox)) == (1, [])


def test_an_unsent_subscribe_given_up_leaves_nothing_behind() -> None:
    conv = Conversation()
    exchange, _ = conv.subscribe("t")
    assert conv.abandon(exchange, sent=False) == b""
    assert conv.receive_data(result_line(1, {"subscription": "s4"})) == []


def test_malformed_pushes_are_plain_notifications() -> None:
    conv = Conversation()
    subscribed(conv)
    conv.receive_data(b'{"jsonrpc":"2.0","method":"rpc.event","params":["s1"]}\n')
    conv.receive_data(b'{"jsonrpc":"2.0","method":"rpc.event","params":{"subscription":1}}\n')
    assert len(conv.inbox) == 2
