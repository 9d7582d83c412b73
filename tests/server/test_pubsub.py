"""Topics and subscriber queues (jrpc_unix._server.pubsub), without a server: what a queue holds,
what it drops, and what it gives back to its connection's budget."""

from __future__ import annotations

from jrpc_unix._server.pubsub import Budget, SubscriberQueue, Topic


def test_a_subscription_queue_is_bounded_in_bytes_too() -> None:
    """Large events: a queue of 100 events must not hold 100 big ones past the byte budget."""
    budget = Budget(10_000)
    sub = SubscriberQueue("big", queue_size=100, budget=budget)
    dropped = sum(sub.push(b'"' + b"x" * 3_000 + b'"') for _ in range(10))
    assert len(sub.queue) == 3
    assert sub.bytes == budget.bytes <= 10_000
    assert dropped == 7 == sub.dropped
    assert sub.push(b'"' + b"y" * 50_000 + b'"') == 3  # one event larger than the bound stays, alone
    assert len(sub.queue) == 1
    notice, event = sub.take()
    assert b'"count":10' in notice
    assert b"yyy" in event
    assert sub.bytes == budget.bytes == 0


def test_a_full_queue_drops_its_oldest_and_says_how_many_before_the_rest() -> None:
    budget = Budget(1 << 20)
    sub = SubscriberQueue("t", queue_size=3, budget=budget)
    assert [sub.push(b"%d" % i) for i in range(5)] == [0, 0, 0, 1, 1]
    notice, *events = sub.take()
    assert notice == (
        b'{"jsonrpc":"2.0","method":"rpc.dropped","params":{"subscription":"'
        + sub.id.encode()
        + b'","topic":"t","count":2}}'
    )
    assert [e.rsplit(b'"data":', 1)[1] for e in events] == [b"2}}", b"3}}", b"4}}"]
    assert sub.take() == []  # the notice once, and nothing is left


def test_queues_of_one_connection_share_its_budget_and_a_busy_one_pays() -> None:
    budget = Budget(2_000)
    quiet = SubscriberQueue("quiet", queue_size=100, budget=budget)
    busy = SubscriberQueue("busy", queue_size=100, budget=budget)
    quiet.push(b"q" * 500)
    for _ in range(20):
        busy.push(b"b" * 500)
    assert len(quiet.queue) == 1, "the quiet queue keeps its event"
    assert budget.bytes == quiet.bytes + busy.bytes <= 2_000
    quiet.clear()
    busy.clear()
    assert budget.bytes == 0


def test_a_topic_encodes_an_event_once_for_all_its_subscribers() -> None:
    topic = Topic("t")
    budget = Budget(1 << 20)
    subs = [SubscriberQueue("t", queue_size=2, budget=budget) for _ in range(3)]
    assert topic.publish({"n": 1}) == 0  # nobody subscribed: nothing happens
    for sub in subs:
        topic.add_subscriber(sub)
    assert topic.publish({"n": 1}) == 0
    assert topic.publish({"n": 2}) == 0
    assert topic.publish({"n": 3}) == 3  # each queue of 2 drops its oldest
    firsts = [sub.queue[0] for sub in subs]
    assert firsts[0] == b'{"n":2},"epoch":"","seq":2'  # what follows "data": in rpc.event
    assert all(f is firsts[0] for f in firsts), "one encoding, shared"


def test_a_topic_knows_whether_an_event_goes_anywhere() -> None:
    """``watched`` is what publishers read on every event: kept true to the subscribers and history."""
    topic = Topic("t", history=4)
    sub = SubscriberQueue("t", queue_size=2, budget=Budget(1 << 20))
    assert not topic.watched
    topic.add_subscriber(sub)
    assert topic.watched
    topic.remove_subscriber(sub)
    assert not topic.watched
    topic.keep_history()  # (the first subscription with history on: events are kept from now)
    assert topic.watched
    topic.add_subscriber(sub)
    topic.remove_subscriber(sub)
    assert topic.watched, "the history still keeps events"
