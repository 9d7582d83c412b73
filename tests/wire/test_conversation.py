"""jrpc_unix._wire.conversation, no I/O: requests out as bytes, answers in as events.

Answers are made with the server's own encoders (``_wire.messages.encode_result``/
``encode_error``), so the client is held to exactly what the server writes. Like h11's tests,
input is also fed one byte at a time: framing must not depend on how reads split. Pushed events
(subscriptions, progress, notifications) are test_feeds.py's.
"""

from __future__ import annotations

import pytest
from helpers.client import error_line, result_line, sent

from jrpc_unix import Call, ConnectionClosedError, Notify, ProtocolError, Response, RpcError
from jrpc_unix._wire.conversation import Conversation, make_params
from jrpc_unix._wire.events import Answered, Event, FeedChanged, MustSend
from jrpc_unix._wire.messages import encode_error, encode_result

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


# -- matching answers: Answered events ---------------------------------------------------------


def test_answers_out_of_order_complete_the_right_calls() -> None:
    conv = Conversation()
    a, _ = conv.call("slow")
    b, _ = conv.call("fast")
    assert conv.receive_data(result_line(2, "fast")) == [Answered(b)]
    assert b.result() == "fast"
    assert not a.done
    assert conv.receive_data(result_line(1, "slow")) == [Answered(a)]
    assert a.result() == "slow"
    assert conv.waiting == []


def test_input_split_one_byte_at_a_time() -> None:
    conv = Conversation()
    calls = [conv.call("m")[0] for _ in range(3)]
    stream = b"".join(result_line(i, {"n": i, "text": "é\n"}) for i in (3, 1, 2))
    events: list[Event] = []
    for i in range(len(stream)):
        events += conv.receive_data(stream[i : i + 1])
    assert events == [Answered(calls[2]), Answered(calls[0]), Answered(calls[1])]
    assert [c.result() for c in calls] == [
        {"n": 1, "text": "é\n"},
        {"n": 2, "text": "é\n"},
        {"n": 3, "text": "é\n"},
    ]


def test_crlf_and_blank_lines_are_accepted() -> None:
    conv = Conversation()
    call, _ = conv.call("m")
    assert conv.receive_data(b"\r\n  \n" + encode_result(1, 7) + b"\r\n") == [Answered(call)]
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
    assert conv.receive_data(answer) == [Answered(exchange)]
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
    assert conv.receive_data(b"[" + encode_result(1, "a") + b"]\n") == [Answered(exchange)]
    assert exchange.results() == ["a", "b"]


def test_the_seed_response_of_an_answer() -> None:
    """send() of the Go original: an application error is a FAIL, a reserved code is raised."""
    conv = Conversation()
    ok, fail, reserved, edge = (conv.call("m")[0] for _ in range(4))
    conv.receive_data(
        result_line(1, "v")
        + error_line(2, 7, "no", {"k": 1})
        + error_line(3, -32601)
        + error_line(4, -32769, "just outside the reserved range")
    )
    assert ok.response() == Response.ok("v")
    assert fail.response() == Response.fail("no", code=7, data={"k": 1})
    with pytest.raises(RpcError, match=r"^\[-32601\] Method not found$"):
        reserved.response()
    assert edge.response() == Response.fail("just outside the reserved range", code=-32769)


# -- giving up, late and foreign answers -------------------------------------------------------


def test_late_answer_after_abandon_is_dropped() -> None:
    conv = Conversation()
    call, _ = conv.call("slow")
    assert sent(conv.abandon(call)) == {"jsonrpc": "2.0", "method": "rpc.cancel", "params": {"id": 1}}
    assert conv.waiting == []
    assert conv.receive_data(result_line(1, "late")) == []
    assert conv.dropped == 1
    assert not call.done


def test_abandoning_asks_to_cancel_only_the_unanswered_calls_that_were_sent() -> None:
    conv = Conversation()
    exchange, _ = conv.batch([Call("a"), Call("b"), Call("c")])
    assert exchange is not None
    conv.receive_data(b"[" + encode_result(2, "b") + b"]\n")
    cancels = conv.abandon(exchange).splitlines(keepends=True)
    assert [sent(line)["params"] for line in cancels] == [{"id": 1}, {"id": 3}]
    unsent, _ = conv.call("d")
    assert conv.abandon(unsent, sent=False) == b""


def test_unknown_ids_and_duplicates_are_dropped() -> None:
    conv = Conversation()
    call, _ = conv.call("m")
    assert conv.receive_data(result_line(99, "x") + result_line("1", "x") + result_line(True, "x")) == []
    assert conv.dropped == 3
    assert conv.receive_data(result_line(1, "ok") + result_line(1, "again")) == [Answered(call)]
    assert call.result() == "ok"
    assert conv.dropped == 4


def test_null_id_error_goes_to_the_only_waiting_exchange() -> None:
    conv = Conversation()
    exchange, _ = conv.batch([Call("a"), Call("b")])
    assert exchange is not None
    line = error_line(None, -32001, None, "batch of 2 requests exceeds the limit of 1")
    assert conv.receive_data(line) == [Answered(exchange)]
    assert [str(e) for e in exchange.results()] == ["[-32001] Request too large"] * 2


def test_null_id_error_with_several_waiting_is_quoted_when_the_connection_closes() -> None:
    conv = Conversation()
    a, _ = conv.call("a")
    b, _ = conv.call("b")
    assert conv.closed_error("x: closed").args == ("x: closed",)
    assert conv.receive_data(error_line(None, -32006, None, "too many connections")) == []
    assert not a.done
    assert not b.done
    assert conv.receive_data(result_line(None, 1)) == []
    assert conv.dropped == 1
    conv.receive_eof()
    conv.connection_lost()
    error = conv.closed_error("x: closed before answering 'a'")
    assert isinstance(error, ConnectionClosedError)
    assert str(error) == "x: closed before answering 'a' (the server said: [-32006] Server overloaded)"


def test_final_answer_without_newline_counts_at_eof() -> None:
    conv = Conversation()
    call, _ = conv.call("m")
    assert conv.receive_data(encode_result(1, "x")) == []
    assert conv.receive_eof() == [Answered(call)]
    assert call.result() == "x"


def test_a_lost_connection_forgets_partial_input_and_the_waiting() -> None:
    conv = Conversation()
    a, _ = conv.call("a")
    conv.receive_data(b'{"jsonrpc":"2.0","res')
    assert conv.connection_lost() == []  # no subscription to end
    assert conv.waiting == []
    assert not a.done
    b, _ = conv.call("b")
    assert b.ids == [2], "ids keep counting: nothing from before can match"
    assert conv.receive_data(result_line(2, "fresh")) == [Answered(b)]


def test_the_events_read_as_written_and_compare_by_value() -> None:
    conv = Conversation()
    call, _ = conv.call("m")
    assert repr(Answered(call)) == "Answered(<Exchange 'm' ids=[1] waiting>)"
    assert repr(MustSend(b"x\n")) == "MustSend(b'x\\n')"
    assert MustSend(b"x") == MustSend(b"x")
    assert MustSend(b"x") != MustSend(b"y")
    assert Answered(call) != FeedChanged(call)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unhashable"):
        hash(MustSend(b"x"))


# -- what is not JSON-RPC ----------------------------------------------------------------------


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
        (b'{"jsonrpc":"2.0","method":5}\n', r"^the server sent a malformed notification: "),
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
