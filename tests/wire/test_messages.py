"""jrpc_unix._wire.messages and _codec, sans-IO: one framed line in, requests or answers out.

The centrepiece is a differential test: ``is_valid_request`` must decide exactly as
jsonrpcserver's own JSON schema does (``jsonrpcserver.main.default_validator``, a jsonschema
validator of ``jsonrpcserver/request-schema.json``), over the spec's examples and over
hypothesis-generated request-like values.
"""

from __future__ import annotations

import contextlib
import json
import math
import warnings
from typing import Any

import pytest
from helpers import SPEC_EXAMPLES
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jrpc_unix._errors import ErrorCode
from jrpc_unix._wire.fastjson import UnserializableError, dumps, loads
from jrpc_unix._wire.framing import TOO_LONG, LineSplitter
from jrpc_unix._wire.messages import (
    ErrorAnswer,
    LineTooLong,
    Request,
    encode_error,
    encode_result,
    is_valid_request,
    parse_line,
    parser_for,
    result_answer,
    unparsable,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from jsonrpcserver.main import default_validator


def schema_accepts(obj: Any) -> bool:
    try:
        default_validator(obj)
    except Exception:
        return False
    return True


def ours_accepts(obj: Any) -> bool:
    """is_valid_request judges one request; the schema also admits a non-empty batch of them."""
    if type(obj) is list:
        return bool(obj) and all(is_valid_request(item) for item in obj)
    return is_valid_request(obj)


# -- strategies ----------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 10, max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=6,
)
member_names = st.sampled_from(["jsonrpc", "method", "id", "params", "foo", "error", "result", "ID", ""])


@st.composite
def request_like(draw: st.DrawFn) -> Any:
    """Mostly almost-valid requests: each member present or not, well- or ill-typed, plus extras."""
    obj: dict[str, Any] = {}
    if draw(st.booleans()) or draw(st.booleans()):
        versions = st.sampled_from(["2.0", "2.0", "1.0", "2", 2.0, 2, None, ["2.0"]])
        obj["jsonrpc"] = draw(st.just("2.0") | versions | json_values)  # right a third of the time
    if draw(st.booleans()) or draw(st.booleans()):
        obj["method"] = draw(st.text(max_size=8) | json_values)
    if draw(st.booleans()):
        finite = st.floats(allow_nan=False, allow_infinity=False)
        obj["id"] = draw(st.integers() | finite | st.text() | st.none() | json_values)
    if draw(st.booleans()):
        structured = st.lists(json_values, max_size=3) | st.dictionaries(st.text(max_size=3), json_values)
        obj["params"] = draw(structured | json_values)
    if draw(st.integers(0, 3)) == 0:
        for _ in range(draw(st.integers(1, 2))):
            obj[draw(member_names | st.text(max_size=4))] = draw(json_values)
    return obj


anything = request_like() | json_values | st.lists(request_like(), max_size=3)

VALID = {"jsonrpc": "2.0", "method": "m"}


def edge_cases() -> list[Any]:
    cases: list[Any] = [
        VALID,
        {**VALID, "id": 1},
        {**VALID, "id": None},
        {**VALID, "id": "x"},
        {**VALID, "id": 1.5},
        {**VALID, "id": True},
        {**VALID, "id": False},
        {**VALID, "id": 2**100},
        {**VALID, "id": []},
        {**VALID, "id": {}},
        {**VALID, "params": []},
        {**VALID, "params": {}},
        {**VALID, "params": None},
        {**VALID, "params": "bar"},
        {**VALID, "params": 1},
        {**VALID, "params": True},
        {**VALID, "extra": 1},
        {**VALID, "id": 1, "params": [], "extra": None},
        {"jsonrpc": "2.0"},
        {"method": "m"},
        {"jsonrpc": "1.0", "method": "m"},
        {"jsonrpc": 2.0, "method": "m"},
        {"jsonrpc": "2.0", "method": 1},
        {"jsonrpc": "2.0", "method": None},
        {"jsonrpc": "2.0", "method": ""},
        {"jsonrpc": "2.0", "method": "m", "jsonrpc2": "2.0"},
        {},
        [],
        [VALID],
        [VALID, {"foo": "boo"}],
        [[VALID]],
        [1],
        1,
        "x",
        None,
        True,
    ]
    for _, req, _ in SPEC_EXAMPLES:
        with contextlib.suppress(ValueError):  # the invalid-JSON examples
            cases.append(json.loads(req))
    return cases


@pytest.mark.parametrize("obj", edge_cases(), ids=repr)
def test_is_valid_request_matches_the_schema_on_edge_cases(obj: Any) -> None:
    assert ours_accepts(obj) == schema_accepts(obj)


@settings(max_examples=800, deadline=None)
@given(obj=anything)
@example(obj={"jsonrpc": "2.0", "method": "m", "id": True})
@example(obj={"jsonrpc": "2.0", "method": "m", "id": 1.0})
@example(obj={"jsonrpc": "2.0", "method": "m", "params": [[{"a": [1]}]], "id": {"n": 1}})
def test_is_valid_request_differential_against_jsonrpcserver_schema(obj: Any) -> None:
    assert ours_accepts(obj) == schema_accepts(obj)


def test_the_generator_reaches_both_outcomes() -> None:
    """Guard against a vacuous differential: the strategy yields valid and invalid requests.

    Derandomized, so the outcome is the same on every run: about 1 in 16 of its requests is
    valid, so 300 examples meet both outcomes (a random run missed every valid one once).
    """
    seen: set[bool] = set()

    @settings(max_examples=300, deadline=None, database=None, derandomize=True)
    @given(obj=request_like())
    def probe(obj: Any) -> None:
        seen.add(schema_accepts(obj))

    probe()
    assert seen == {True, False}


# -- one read's lines: the parser choice, and what cannot be parsed ----------------------------------


def test_the_parser_for_a_read_is_orjson_unless_a_line_may_hold_a_wide_integer() -> None:
    import orjson

    plain = [b'{"jsonrpc":"2.0","method":"m","id":1}', b"[1,2]"]
    assert parser_for(plain) is orjson.loads
    wide = [*plain, b'{"jsonrpc":"2.0","method":"m","id":12345678901234567890}']
    parse = parser_for(wide)
    assert parse is not orjson.loads
    assert parse(wide[-1])["id"] == 12345678901234567890  # exact, not a float


def test_a_line_the_framing_dropped_is_refused_by_the_parser_with_its_own_error() -> None:
    splitter = LineSplitter(16)
    lines = splitter.feed(b'{"a":1}\n' + b"x" * 40 + b'\n{"b":2}\n')
    assert lines[1] is TOO_LONG
    parse = parser_for(lines)
    assert parse(lines[0]) == {"a": 1}
    with pytest.raises(LineTooLong) as caught:
        parse(lines[1])
    message = unparsable(caught.value, 16)
    assert message.reason == "too_large"
    assert answer(message.items[0]) == {  # type: ignore[arg-type]
        "jsonrpc": "2.0",
        "error": {
            "code": -32001,
            "message": "Request too large",
            "data": "message exceeds the limit of 16 bytes",
        },
        "id": None,
    }
    assert parse(lines[2]) == {"b": 2}


def test_a_line_that_is_not_json_is_a_parse_error_with_its_reason() -> None:
    import orjson

    with pytest.raises(orjson.JSONDecodeError) as caught:
        parser_for([b"{nope"])(b"{nope")
    message = unparsable(caught.value, 100)
    assert message.reason == "parse_error"
    assert answer(message.items[0])["error"]["code"] == -32700  # type: ignore[arg-type]
    assert parse_line(b"{nope", 10).reason == "parse_error"
    assert parse_line(b"[]", 10).reason == "invalid_request"


def test_a_result_that_is_not_json_is_an_error_outcome() -> None:
    assert result_answer(1, "ok") == b'{"jsonrpc":"2.0","result":"ok","id":1}'
    failed = result_answer(1, {1, 2})
    assert isinstance(failed, ErrorAnswer)
    assert failed.reason == ""
    assert answer(failed.line)["error"]["code"] == -32603  # type: ignore[arg-type]
    assert encode_result(1, {1, 2}) == failed.line  # the bytes alone, for who needs no outcome


# -- parse_line ----------------------------------------------------------------------------------


def answer(line: bytes) -> Any:
    return json.loads(line)


def test_parse_single_call() -> None:
    msg = parse_line(b'{"jsonrpc":"2.0","method":"m","params":[1],"id":7}', 10)
    assert not msg.is_batch
    assert msg.items == [Request("m", [1], 7, False)]


def test_parse_notification() -> None:
    msg = parse_line(b'{"jsonrpc":"2.0","method":"m","params":{"a":1}}', 10)
    assert msg.items == [Request("m", {"a": 1}, None, True)]


def test_parse_null_id_is_a_call_not_a_notification() -> None:
    msg = parse_line(b'{"jsonrpc":"2.0","method":"m","id":null}', 10)
    assert msg.items == [Request("m", None, None, False)]


def test_parse_error_has_null_id_and_a_reason() -> None:
    (item,) = parse_line(b'{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]', 10).items
    a = answer(item)  # type: ignore[arg-type]
    assert a["id"] is None
    assert a["error"]["code"] == -32700
    assert a["error"]["message"] == "Parse error"
    assert isinstance(a["error"]["data"], str)


@pytest.mark.parametrize(
    "line",
    [
        b'{"jsonrpc":"2.0","method":"m","params":["\xff"],"id":1}',
        b'{"jsonrpc":"2.0","method":"m","params":["\xc3"],"id":1}',
        b'{"jsonrpc":"2.0","method":"m","params":["\xed\xa0\x80"],"id":1}',  # an encoded surrogate
        b'{"jsonrpc":"2.0","method":"m","params":["\xff"],"id":12345678901234567890}',  # stdlib path
    ],
)
def test_invalid_utf8_is_a_parse_error(line: bytes) -> None:
    (item,) = parse_line(line, 10).items
    a = answer(item)  # type: ignore[arg-type]
    assert a["error"]["code"] == -32700
    assert a["id"] is None
    assert "UTF-8" in a["error"]["data"]


@pytest.mark.parametrize(
    ("literal", "long_digits"),
    [
        *((lit, long) for lit in (b"NaN", b"Infinity", b"-Infinity") for long in (False, True)),
        (b"1e400", False),
        (b"1e400", True),
        (b"-1e400", True),
    ],
)
def test_non_json_numbers_are_parse_errors(literal: bytes, long_digits: bool) -> None:
    extra = b',"x":"12345678901234567890"' if long_digits else b""
    line = b'{"jsonrpc":"2.0","method":"m","params":[' + literal + b"]" + extra + b',"id":1}'
    (item,) = parse_line(line, 10).items
    assert answer(item)["error"]["code"] == -32700  # type: ignore[arg-type]


def test_deeply_nested_json_is_a_parse_error_not_a_crash() -> None:
    (item,) = parse_line(b"[" * 100_000, 10).items
    a = answer(item)  # type: ignore[arg-type]
    assert a["error"]["code"] == -32700
    assert a["id"] is None


def test_deeply_nested_json_with_a_long_number_is_a_parse_error() -> None:
    (item,) = parse_line(b"[" * 100_000 + b"12345678901234567890", 10).items
    assert answer(item)["error"]["code"] == -32700  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("line", "rid"),
    [
        (b'{"jsonrpc":"2.0","method":1,"params":"bar"}', None),
        (b'{"jsonrpc":"2.0","method":1,"id":5}', 5),  # a well-formed id is echoed
        (b'{"jsonrpc":"2.0","method":"m","id":5,"extra":1}', 5),
        (b'{"jsonrpc":"1.0","method":"m","id":"a"}', "a"),
        (b'{"jsonrpc":"2.0","method":"m","id":true}', None),  # an ill-formed id is not
        (b'{"jsonrpc":"2.0","method":"m","id":[1]}', None),
        (b'{"jsonrpc":"2.0","method":"m","params":3,"id":2.5}', 2.5),
        (b"1", None),
        (b'"x"', None),
        (b"null", None),
        (b"{}", None),
    ],
)
def test_invalid_request_answers(line: bytes, rid: Any) -> None:
    (item,) = parse_line(line, 10).items
    a = answer(item)  # type: ignore[arg-type]
    assert a == {"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid Request"}, "id": rid}


def test_empty_batch_is_one_invalid_request() -> None:
    msg = parse_line(b"[]", 10)
    assert not msg.is_batch
    (item,) = msg.items
    a = answer(item)  # type: ignore[arg-type]
    assert a["error"]["code"] == -32600
    assert a["error"]["message"] == "Invalid Request"
    assert a["id"] is None


def test_batch_answers_per_member_and_keeps_valid_members() -> None:
    line = b'[1,{"jsonrpc":"2.0","method":"a","id":1},{"foo":"boo"},{"jsonrpc":"2.0","method":"n"}]'
    msg = parse_line(line, 10)
    assert msg.is_batch
    assert len(msg.items) == 4
    assert answer(msg.items[0])["error"]["code"] == -32600  # type: ignore[arg-type]
    assert msg.items[1] == Request("a", None, 1, False)
    assert answer(msg.items[2])["error"]["code"] == -32600  # type: ignore[arg-type]
    assert msg.items[3] == Request("n", None, None, True)


def test_batch_of_one_invalid_is_still_a_batch() -> None:
    msg = parse_line(b"[1]", 10)
    assert msg.is_batch
    assert len(msg.items) == 1


def test_over_long_batch_is_one_too_large_error() -> None:
    batch = json.dumps([{"jsonrpc": "2.0", "method": "m", "id": i} for i in range(4)]).encode()
    msg = parse_line(batch, 3)
    assert not msg.is_batch
    (item,) = msg.items
    a = answer(item)  # type: ignore[arg-type]
    assert a["error"]["code"] == ErrorCode.REQUEST_TOO_LARGE == -32001
    assert a["id"] is None
    assert parse_line(batch, 4).is_batch


def test_nested_batch_member_is_invalid() -> None:
    msg = parse_line(b'[[{"jsonrpc":"2.0","method":"m","id":1}]]', 10)
    assert msg.is_batch
    assert answer(msg.items[0])["error"]["code"] == -32600  # type: ignore[arg-type]


# -- exact id echo -------------------------------------------------------------------------------

ID_CASES: list[Any] = [
    0,
    -1,
    1,
    2**31,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    2**100,
    -(2**63),
    -(2**64),
    -(2**100),
    10**30,
    1.5,
    -0.5,
    0.1,
    1e300,
    1e-300,
    "",
    "1",
    "a\nb",
    "é€😀",
    "\u2028",
    None,
]


def echo_id(raw_id: bytes) -> bytes:
    """The id bytes of the answer to a call whose id is ``raw_id``."""
    (req,) = parse_line(b'{"jsonrpc":"2.0","method":"m","id":' + raw_id + b"}", 10).items
    assert isinstance(req, Request)
    line = encode_result(req.id, "r")
    assert b"\n" not in line
    return line[line.rindex(b'"id":') + 5 : -1]


@pytest.mark.parametrize("rid", ID_CASES, ids=repr)
def test_exact_id_echo(rid: Any) -> None:
    raw = json.dumps(rid).encode()
    echoed = json.loads(echo_id(raw))
    assert echoed == rid
    assert type(echoed) is type(rid)
    if isinstance(rid, int):  # integers of any size come back byte for byte
        assert echo_id(raw) == raw


@pytest.mark.parametrize("rid", [-(2**63) - 1, -(10**19) + 1], ids=repr)
def test_exact_id_echo_of_19_digit_negatives_below_int64(rid: int) -> None:
    raw = str(rid).encode()
    assert echo_id(raw) == raw


@settings(max_examples=500, deadline=None)
@given(rid=st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text() | st.none())
def test_exact_id_echo_property(rid: Any) -> None:
    echoed = json.loads(echo_id(json.dumps(rid).encode()))
    assert echoed == rid
    assert type(echoed) is type(rid)


@pytest.mark.parametrize("code", [-32700, -32600, -32601, 1, 42])
def test_error_answers_echo_the_id(code: int) -> None:
    for rid in (2**80, 1.25, "x", None):
        a = json.loads(encode_error(rid, code))
        assert a["id"] == rid


# -- encoding --------------------------------------------------------------------------------------


def test_answers_are_compact_single_lines() -> None:
    line = encode_result(1, {"text": "a\nb\r", "list": [1, 2]})
    assert line == b'{"jsonrpc":"2.0","result":{"text":"a\\nb\\r","list":[1,2]},"id":1}'
    line = encode_error(2, -32603, data={"k": "v\n"})
    assert line == (
        b'{"jsonrpc":"2.0","error":{"code":-32603,"message":"Internal error","data":{"k":"v\\n"}},"id":2}'
    )


def test_error_message_texts_are_the_spec_s() -> None:
    expected = {
        -32700: "Parse error",
        -32600: "Invalid Request",
        -32601: "Method not found",
        -32602: "Invalid params",
        -32603: "Internal error",
    }
    for code, message in expected.items():
        assert json.loads(encode_error(None, code))["error"] == {"code": code, "message": message}


def test_error_without_data_has_no_data_member_but_null_data_is_kept() -> None:
    assert "data" not in json.loads(encode_error(1, -32600))["error"]
    assert json.loads(encode_error(1, -32600, data=None))["error"]["data"] is None


def test_unserializable_error_data_is_dropped() -> None:
    a = json.loads(encode_error(3, 7, "boom", data=object()))
    assert a == {"jsonrpc": "2.0", "error": {"code": 7, "message": "boom"}, "id": 3}


@pytest.mark.parametrize(
    "result",
    [object(), {1, 2}, float("nan"), float("inf"), -float("inf"), {"x": [float("nan")]}, (1, float("inf"))],
    ids=["object", "set", "nan", "inf", "-inf", "nested-nan", "tuple-inf"],
)
def test_unserializable_result_is_internal_error_with_the_id(result: Any) -> None:
    a = json.loads(encode_result("abc", result))
    assert a["id"] == "abc"
    assert a["error"]["code"] == -32603
    assert a["error"]["message"] == "Internal error"
    assert "result" not in a


def test_results_beyond_64_bits_and_non_string_keys() -> None:
    assert json.loads(encode_result(1, [2**64, -(2**70)]))["result"] == [2**64, -(2**70)]
    assert json.loads(encode_result(1, {1: "a"}))["result"] == {"1": "a"}


def test_null_is_not_mistaken_for_nan() -> None:
    assert json.loads(encode_result(1, [None, 1.0]))["result"] == [None, 1.0]


# -- codec -----------------------------------------------------------------------------------------


def test_codec_refuses_nan_and_infinity_both_ways() -> None:
    for text in (b"NaN", b"[Infinity]", b"-Infinity", b'[NaN, "12345678901234567890"]'):
        with pytest.raises(ValueError):  # noqa: PT011 - any reason; the type is the contract
            loads(text)
    for value in (math.nan, [math.inf], {"a": -math.inf}):
        with pytest.raises(UnserializableError):
            dumps(value)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_codec_round_trip(value: Any) -> None:
    text = dumps(value)
    assert b"\n" not in text
    assert loads(text) == value


# -- the codec's two parsers agree -----------------------------------------------------------------
#
# orjson parses most lines; a line holding a run of 19+ digits goes to the stdlib parser instead
# (to keep huge integers exact). Whether a line is JSON, and what it means, must not depend on
# that choice: the same text is padded with "0" or with 19 digits (inside a string, so its
# meaning is unchanged) and must parse alike.

PAD_SHORT = b'"0"'
PAD_LONG = b'"1234567890123456789"'

TRICKY = [
    b"\xed\xa0\x80",  # an encoded surrogate: not UTF-8
    b"\xed\xbf\xbf",
    b"\xc0\x80",  # overlong
    b"\xff",
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"\\ud800",  # an escaped lone surrogate
    b"\\udc00x",
    b"\\ud83d\\ude00",  # a valid escaped pair
    b"\xef\xbb\xbf",  # U+FEFF inside a string: fine
    b"\\u0000",
    b"\x00",
    b"\t",
    b"\\x",
    b"\xc3\xa9",
]


def _parse_outcome(line: bytes) -> Any:
    (item,) = parse_line(line, 10).items
    if isinstance(item, bytes):
        return ("error", json.loads(item)["error"]["code"])
    return ("ok", item.params[0] if isinstance(item.params, list) else item.params)  # type: ignore[union-attr]


def _padded(template: bytes, body: bytes) -> tuple[bytes, bytes]:
    text = template.replace(b"BODY", body)
    return text.replace(b"PAD", PAD_SHORT), text.replace(b"PAD", PAD_LONG)


IN_STRING = b'{"jsonrpc":"2.0","method":"m","params":["BODY",PAD],"id":1}'
AS_VALUE = b'{"jsonrpc":"2.0","method":"m","params":[BODY,PAD],"id":1}'
AT_START = b'BODY{"jsonrpc":"2.0","method":"m","params":[0,PAD],"id":1}'


@pytest.mark.parametrize(
    ("template", "body"),
    [
        *((IN_STRING, b) for b in (b"\xc0\x80", b"\xff", b"\xf4\x90\x80\x80", b"\\ud83d\\ude00", b"\xc3")),
        *((AS_VALUE, b) for b in (b"1e400", b"NaN", b"-0", b"1E5", b"01", b"1.", b".5", b"+1", b"1e-400")),
        pytest.param(IN_STRING, b"\xed\xa0\x80", id="encoded-surrogate"),
        pytest.param(IN_STRING, b"\\ud800", id="escaped-lone-surrogate"),
        pytest.param(AT_START, b"\xef\xbb\xbf", id="bom"),
    ],
)
def test_both_parsers_agree(template: bytes, body: bytes) -> None:
    short, long = _padded(template, body)
    assert _parse_outcome(short) == _parse_outcome(long)


@settings(max_examples=300, deadline=None)
@given(
    template=st.sampled_from([IN_STRING, AS_VALUE, AT_START]),
    body=st.lists(st.sampled_from(TRICKY) | st.binary(max_size=3), max_size=3).map(b"".join),
)
@example(template=IN_STRING, body=b"\xed\xa0\x80")  # always tried first: the bug above
def test_both_parsers_agree_property(template: bytes, body: bytes) -> None:
    short, long = _padded(template, body)
    assert _parse_outcome(short) == _parse_outcome(long)
