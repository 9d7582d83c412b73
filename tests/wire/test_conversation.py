"""jrpc_unix._wire.conversation, no I/O: requests out as bytes, answers in as bytes.

Answers are made with the server's own encoders (``_protocol.encode_result``/``encode_error``),
so the client is held to exactly what the server writes. Like h11's tests, input is also fed
one byte at a time: framing must not depend on how reads split.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from jrpc_unix import Call, Notify, ProtocolError, RpcError
from jrpc_unix._wire.conversation import Conversation, Exchange, make_params
from jrpc_unix._wire.messages import encode_error, encode_result


def sent(data: bytes) -> Any:
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1, "one message is one line"
    return json.loads(data)


def result_line(rid: Any, value: Any) -> bytes:
    return encode_result(rid, value) + b"\n"


def error_line(rid: Any, code: int, message: str | None = None, data: Any = None) -> bytes:
    if data is None:
        return encode_error(rid, code, message) + b"\n"
    return encode_error(rid, code, message, data) + b"\n"


# -- building requests -------------------------------------------------------------------------


def test_call_builds_a_request_with_a_fresh_id() -> None:
    conv = Conversation()
    first, data1 = conv.call("subtract", [42, 23])
    second, data2 = conv.call("config.get", {"key": "level"})
    assert sent(data1) == {"jsonrpc": "2.0", "method": "subtract", "params": [42, 23], "id": 1}
    assert sent(data2) == {"jsonrpc": "2.0", "method": "config.get", "params": {"key": "level"}, "id": 2}
    assert first.ids == [1]
    assert second.ids == [2]
    assert conv.waiting == [first, second]


def test_empty_params_are_left_out() -> None:
    conv = Conversation()
    assert sent(conv.call("ping")[1]) == {"jsonrpc": "2.0", "method": "ping", "id": 1}
    assert sent(conv.call("ping", [])[1]) == {"jsonrpc": "2.0", "method": "ping", "id": 2}
    assert sent(conv.notify("ping", {})) == {"jsonrpc": "2.0", "method": "ping"}


def test_notification_has_no_id_and_waits_for_nothing() -> None:
    conv = Conversation()
    data = conv.notify("config.set", {"key": "level", "value": "debug"})
    assert sent(data) == {
        "jsonrpc": "2.0",
        "method": "config.set",
        "params": {"key": "level", "value": "debug"},
    }
    assert conv.waiting == []


def test_batch_is_one_line_with_ids_only_on_calls() -> None:
    conv = Conversation()
    exchange, data = conv.batch(
        [Call("ping"), Notify("update", 1, 2), Call("subtract", minuend=5, subtrahend=3)]
    )
    assert sent(data) == [
        {"jsonrpc": "2.0", "method": "ping", "id": 1},
        {"jsonrpc": "2.0", "method": "update", "params": [1, 2]},
        {"jsonrpc": "2.0", "method": "subtract", "params": {"minuend": 5, "subtrahend": 3}, "id": 2},
    ]
    assert exchange is not None
    assert exchange.ids == [1, 2]


def test_batch_of_notifications_expects_no_answer() -> None:
    conv = Conversation()
    exchange, data = conv.batch([Notify("a"), Notify("b")])
    assert exchange is None
    assert len(sent(data)) == 2
    assert conv.waiting == []


def test_batch_rejects_nothing_and_foreign_items() -> None:
    conv = Conversation()
    with pytest.raises(ValueError, match="a batch needs at least one call or notification"):
        conv.batch([])
    with pytest.raises(TypeError, match=r"batch items are Call\(...\) or Notify\(...\), not \('ping',\)"):
        conv.batch([("ping",)])  # type: ignore[list-item]


def test_params_that_are_not_json_raise_typeerror_before_anything_is_sent() -> None:
    conv = Conversation()
    with pytest.raises(TypeError, match=r"cannot send 'echo': its params are not JSON"):
        conv.call("echo", [object()])
    with pytest.raises(TypeError, match="cannot send 'echo': its params are not JSON"):
        conv.notify("echo", [float("nan")])
    assert conv.waiting == []


def test_method_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="method name must be a str, not int"):
        Conversation().call(5)  # type: ignore[arg-type]


def test_make_params() -> None:
    assert make_params((), {}) is None
    assert make_params((1, "a"), {}) == [1, "a"]
    assert make_params((), {"key": 1}) == {"key": 1}
    with pytest.raises(TypeError, match="JSON-RPC params are either positional or named, not both"):
        make_params((1,), {"key": 1})


def test_call_and_notify_items_read_as_written() -> None:
    assert repr(Call("ping")) == "Call('ping')"
    assert repr(Call("subtract", 42, 23)) == "Call('subtract', 42, 23)"
    assert repr(Notify("config.set", key="level", value=1)) == "Notify('config.set', key='level', value=1)"
    assert (
        repr(Call.with_params("x", {"not an identifier": 1}))
        == "Call.with_params('x', {'not an identifier': 1})"
    )
    assert Call("a", 1) == Call("a", 1)
    assert Call("a", 1) != Notify("a", 1)
    assert Call.with_params("a", [1]) == Call("a", 1)


# -- matching answers --------------------------------------------------------------------------


def test_answers_out_of_order_complete_the_right_calls() -> None:
    conv = Conversation()
    a, _ = conv.call("slow")
    b, _ = conv.call("fast")
    assert conv.receive_data(result_line(2, "fast")) == [b]
    assert b.result() == "fast"
    assert not a.done
    assert conv.receive_data(result_line(1, "slow")) == [a]
    assert a.result() == "slow"
    assert conv.waiting == []


def test_input_split_one_byte_at_a_time() -> None:
    conv = Conversation()
    calls = [conv.call("m")[0] for _ in range(3)]
    stream = b"".join(result_line(i, {"n": i, "text": "é\n"}) for i in (3, 1, 2))
    done: list[Exchange] = []
    for i in range(len(stream)):
        done += conv.receive_data(stream[i : i + 1])
    assert done == [calls[2], calls[0], calls[1]]
    assert [c.result() for c in calls] == [
        {"n": 1, "text": "é\n"},
        {"n": 2, "text": "é\n"},
        {"n": 3, "text": "é\n"},
    ]


def test_crlf_and_blank_lines_are_accepted() -> None:
    conv = Conversation()
    call, _ = conv.call("m")
    assert conv.receive_data(b"\r\n  \n" + encode_result(1, 7) + b"\r\n") == [call]
    assert call.result() == 7


def test_error_answer_becomes_rpcerror_with_code_message_data() -> None:
    conv = Conversation()
    call, _ = conv.call("config.get")
    conv.receive_data(error_line(1, 1, "unknown config key 'colour'", {"known": ["level"]}))
    with pytest.raises(RpcError, match=r"^\[1\] unknown config key 'colour'$") as info:
        call.result()
    assert (info.value.code, info.value.message, info.value.data) == (
        1,
        "unknown config key 'colour'",
        {"known": ["level"]},
    )


def test_batch_answer_in_any_order_gives_results_in_call_order() -> None:
    conv = Conversation()
    exchange, _ = conv.batch([Call("a"), Notify("n"), Call("b"), Call("c")])
    assert exchange is not None
    answer = (
        b"[" + b",".join([encode_result(3, "c"), encode_error(2, -32601), encode_result(1, "a")]) + b"]\n"
    )
    assert conv.receive_data(answer) == [exchange]
    first, second, third = exchange.results()
    assert first == "a"
    assert isinstance(second, RpcError)
    assert str(second) == "[-32601] Method not found"
    assert third == "c"
    assert exchange.raw == [answer.rstrip(b"\n")]


def test_batch_answered_in_pieces_completes_on_the_last_piece() -> None:
    conv = Conversation()
    exchange, _ = conv.batch([Call("a"), Call("b")])
    assert exchange is not None
    assert conv.receive_data(b"[" + encode_result(2, "b") + b"]\n") == []
    assert conv.receive_data(b"[" + encode_result(1, "a") + b"]\n") == [exchange]
    assert exchange.results() == ["a", "b"]


def test_late_answer_after_abandon_is_dropped() -> None:
    conv = Conversation()
    call, _ = conv.call("slow")
    conv.abandon(call)
    assert conv.waiting == []
    assert conv.receive_data(result_line(1, "late")) == []
    assert conv.dropped == 1
    assert not call.done


def test_unknown_ids_and_duplicates_are_dropped() -> None:
    conv = Conversation()
    call, _ = conv.call("m")
    assert conv.receive_data(result_line(99, "x") + result_line("1", "x") + result_line(True, "x")) == []
    assert conv.dropped == 3
    assert conv.receive_data(result_line(1, "ok") + result_line(1, "again")) == [call]
    assert call.result() == "ok"
    assert conv.dropped == 4


def test_null_id_error_goes_to_the_only_waiting_exchange() -> None:
    conv = Conversation()
    exchange, _ = conv.batch([Call("a"), Call("b")])
    assert exchange is not None
    line = error_line(None, -32001, None, "batch of 2 requests exceeds the limit of 1")
    assert conv.receive_data(line) == [exchange]
    assert [str(e) for e in exchange.results()] == ["[-32001] Request too large"] * 2


def test_null_id_error_with_several_waiting_is_kept_unattributed() -> None:
    conv = Conversation()
    a, _ = conv.call("a")
    b, _ = conv.call("b")
    assert conv.receive_data(error_line(None, -32006, None, "too many connections")) == []
    assert not a.done
    assert not b.done
    assert [str(e) for e in conv.unattributed] == ["[-32006] Server overloaded"]
    assert conv.receive_data(result_line(None, 1)) == []
    assert conv.dropped == 1


def test_final_answer_without_newline_counts_at_eof() -> None:
    conv = Conversation()
    call, _ = conv.call("m")
    assert conv.receive_data(encode_result(1, "x")) == []
    assert conv.receive_eof() == [call]
    assert call.result() == "x"


def test_reset_forgets_partial_input_and_returns_the_waiting() -> None:
    conv = Conversation()
    a, _ = conv.call("a")
    conv.receive_data(b'{"jsonrpc":"2.0","res')
    assert conv.reset() == [a]
    assert conv.waiting == []
    b, _ = conv.call("b")
    assert b.ids == [2], "ids keep counting: nothing from before can match"
    assert conv.receive_data(result_line(2, "fresh")) == [b]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"not json\n", r"^the server sent a line that is not JSON \("),
        (b"\xff\xfe\n", r"^the server sent a line that is not JSON \("),
        (b'{"jsonrpc":"2.0","result":1}\n', r"^the server sent something that is not a JSON-RPC answer: "),
        (
            b'{"jsonrpc":"1.0","result":1,"id":1}\n',
            r"^the server sent something that is not a JSON-RPC answer: ",
        ),
        (b"[1]\n", r"^the server sent something that is not a JSON-RPC answer: 1$"),
        (b'{"jsonrpc":"2.0","id":1}\n', r"^a JSON-RPC answer needs exactly one of result and error: "),
        (b'{"jsonrpc":"2.0","result":1,"error":{},"id":1}\n', r"^a JSON-RPC answer needs exactly one of"),
        (b'{"jsonrpc":"2.0","error":{"code":"x","message":"m"},"id":1}\n', r"^malformed error object in the"),
        (
            b'{"jsonrpc":"2.0","error":{"code":1},"id":1}\n',
            r"^malformed error object in the server's answer: ",
        ),
    ],
)
def test_what_is_not_a_jsonrpc_answer_is_a_protocol_error(line: bytes, message: str) -> None:
    conv = Conversation()
    conv.call("m")
    with pytest.raises(ProtocolError, match=message):
        conv.receive_data(line)


def test_answer_longer_than_the_limit_is_a_protocol_error() -> None:
    conv = Conversation(max_message_size=64)
    conv.call("m")
    with pytest.raises(
        ProtocolError, match=r"^the server sent an answer longer than the client's 64-byte limit$"
    ):
        conv.receive_data(result_line(1, "x" * 100))


def test_big_integers_and_unicode_round_trip_exactly() -> None:
    conv = Conversation()
    big = 2**70 + 1
    call, data = conv.call("echo", [big, "☃", -0.5])
    assert sent(data)["params"] == [big, "☃", -0.5]
    conv.receive_data(result_line(1, [big, "☃"]))
    assert call.result() == [big, "☃"]


# -- pushed events: subscriptions and progress (jrpc_unix._wire.feeds) ---------------------------------


def event_line(sub: str, data: Any, topic: str = "t") -> bytes:
    params = {"subscription": sub, "topic": topic, "data": data}
    return json.dumps({"jsonrpc": "2.0", "method": "rpc.event", "params": params}).encode() + b"\n"


def dropped_line(sub: str, count: int, topic: str = "t") -> bytes:
    params = {"subscription": sub, "topic": topic, "count": count}
    return json.dumps({"jsonrpc": "2.0", "method": "rpc.dropped", "params": params}).encode() + b"\n"


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
    assert conv.receive_data(chunk) == [exchange]
    assert exchange.feed is not None
    assert (exchange.feed.id, exchange.feed.topic, list(exchange.feed.events)) == ("s7", "t", [1, 2])
    assert conv.take_notifications() == []


def test_feeds_are_routed_by_subscription_and_the_rest_goes_to_the_inbox() -> None:
    conv = Conversation()
    a, _ = conv.subscribe("t")
    b, _ = conv.subscribe("u")
    conv.receive_data(result_line(1, {"subscription": "s1"}) + result_line(2, {"subscription": "s2"}))
    conv.receive_data(event_line("s2", "b1") + event_line("s1", "a1") + event_line("s9", "other"))
    conv.receive_data(b'{"jsonrpc":"2.0","method":"hello","params":[1]}\n')
    assert a.feed is not None
    assert b.feed is not None
    assert (list(a.feed.events), list(b.feed.events)) == (["a1"], ["b1"])
    assert [n.method for n in conv.take_notifications()] == ["rpc.event", "hello"]
    assert conv.feeds.take_touched() == {a.feed, b.feed}


def test_dropped_notices_add_up_and_late_events_after_unsubscribe_are_dropped() -> None:
    conv = Conversation()
    exchange, _ = conv.subscribe("t")
    conv.receive_data(result_line(1, {"subscription": "s1"}))
    feed = exchange.feed
    assert feed is not None
    conv.receive_data(dropped_line("s1", 7) + event_line("s1", 8) + dropped_line("s1", 2))
    assert (feed.dropped, list(feed.events)) == (9, [8])
    assert sent(conv.unsubscribe(feed)) == {
        "jsonrpc": "2.0",
        "method": "rpc.unsubscribe",
        "params": {"subscription": "s1"},
    }
    assert feed.ended == "unsubscribed"
    conv.receive_data(event_line("s1", 9) + dropped_line("s1", 1))
    assert (list(feed.events), feed.dropped, conv.feeds.stray) == ([], 9, 2), "unread events go too"
    assert conv.take_notifications() == []


def test_progress_reports_go_to_the_call_they_name() -> None:
    conv = Conversation()
    conv.subscribe("progress", visible=False)
    conv.receive_data(result_line(1, {"subscription": "s1", "topic": "progress"}))
    assert conv.progress_subscribed
    mine, _ = conv.call("work", [3], progress=True)
    other, _ = conv.call("work", [1])
    reports = [event_line("s1", {"id": 2, "done": i, "total": 3}, "progress") for i in (1, 2)]
    reports.append(event_line("s1", {"id": 3, "done": 1}, "progress"))  # its caller did not ask
    conv.receive_data(b"".join(reports))
    assert list(mine.reports or ()) == [{"id": 2, "done": 1, "total": 3}, {"id": 2, "done": 2, "total": 3}]
    assert other.reports is None
    assert conv.feeds.take_touched() == {mine}
    assert conv.take_notifications() == []
    conv.receive_data(result_line(2, "done") + event_line("s1", {"id": 2, "done": 3}, "progress"))
    assert mine.result() == "done"
    assert len(mine.reports or ()) == 2, "a report for a finished call is dropped"


def test_reset_ends_every_feed_and_the_progress_subscription() -> None:
    conv = Conversation()
    exchange, _ = conv.subscribe("progress")
    conv.receive_data(result_line(1, {"subscription": "s1"}))
    assert conv.progress_subscribed
    conv.reset()
    assert exchange.feed is not None
    assert exchange.feed.ended == "closed"
    assert not conv.progress_subscribed


def test_a_subscription_answered_after_its_caller_gave_up_is_ended() -> None:
    conv = Conversation()
    exchange, _ = conv.subscribe("t")
    conv.abandon(exchange)
    conv.receive_data(result_line(1, {"subscription": "s4"}) + event_line("s4", 1))
    assert [sent(line) for line in conv.outgoing] == [
        {"jsonrpc": "2.0", "method": "rpc.unsubscribe", "params": {"subscription": "s4"}}
    ]
    assert (conv.dropped, conv.feeds.stray, conv.take_notifications()) == (1, 1, [])


def test_an_unsent_subscribe_given_up_leaves_nothing_behind() -> None:
    conv = Conversation()
    exchange, _ = conv.subscribe("t")
    conv.abandon(exchange, sent=False)
    conv.receive_data(result_line(1, {"subscription": "s4"}))
    assert conv.outgoing == []


def test_malformed_pushes_are_plain_notifications() -> None:
    conv = Conversation()
    conv.subscribe("t")
    conv.receive_data(result_line(1, {"subscription": "s1"}))
    conv.receive_data(b'{"jsonrpc":"2.0","method":"rpc.event","params":["s1"]}\n')
    conv.receive_data(b'{"jsonrpc":"2.0","method":"rpc.event","params":{"subscription":1}}\n')
    assert len(conv.take_notifications()) == 2


# -- the client's JSON (jrpc_unix._wire.stdjson) ---------------------------------------------------


def test_stdjson_is_exact_and_strict() -> None:
    from jrpc_unix._wire.stdjson import UnserializableError, dumps, loads

    big = 2**200 + 1
    assert loads(dumps([big, -big, 0.1, "☃", {"k": None}])) == [big, -big, 0.1, "☃", {"k": None}]
    assert dumps("☃\n") == '"☃\\n"'.encode()
    assert dumps("\ud800") == b'"\\ud800"', "a lone surrogate is only valid JSON escaped"
    for bad in (float("nan"), float("inf"), [float("-inf")], object(), {"a": {1, 2}}):
        with pytest.raises(UnserializableError):
            dumps(bad)
    for text, reason in [
        (b"NaN", "NaN is not valid JSON"),
        (b"[Infinity]", "Infinity is not valid JSON"),
        (b"-Infinity", "-Infinity is not valid JSON"),
        (b"1e999", "number 1e999 is out of range"),
        (b"\xff", "can't decode byte 0xff"),
        (b"[1,]", "Expecting value"),
        (b"\xef\xbb\xbf1", "Expecting value"),
    ]:
        with pytest.raises(ValueError, match=reason):
            loads(text)
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(ValueError, match="nested too deeply"):
        loads(deep)


def test_touched_is_what_changed_since_last_taken() -> None:
    conv = Conversation()
    exchange, _ = conv.subscribe("t")
    conv.receive_data(result_line(1, {"subscription": "s1"}))
    conv.receive_data(event_line("s1", 1))
    assert conv.feeds.take_touched() == {exchange.feed}
    assert conv.feeds.take_touched() == set()
