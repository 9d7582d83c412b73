"""jrpc_unix._service.dispatch and _methods, no I/O: a Request in, the answer line out.

The centrepiece is a differential test over generated handler signatures and params: the fast
path (``Dispatcher(fast_path=True)``) must answer exactly as jsonrpcserver's own pipeline
(``fast_path=False``) does, and both exactly as plain ``jsonrpcserver.dispatch_to_serializable``
does with the same handler.
"""

from __future__ import annotations

import inspect
import json
import logging
import subprocess
import sys
import warnings
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from jrpc_unix import Methods, Response, RpcError, Status
from jrpc_unix._service.dispatch import Dispatcher, Invocation
from jrpc_unix._wire.messages import Answer, ErrorAnswer, Request, parse_line

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import jsonrpcserver
    from jsonrpcserver import Error, InvalidParams, JsonRpcError, Success


def to_request(obj: dict[str, Any]) -> Request:
    (req,) = parse_line(json.dumps(obj).encode(), 100).items
    assert isinstance(req, Request), req
    return req


def run(dispatcher: Dispatcher, obj: dict[str, Any]) -> Any:
    """Resolve and run one request the way the server does (sync handlers); the parsed answer.

    Checks on the way that the outcome says "error" exactly when its line is an error object.
    """
    req = to_request(obj)
    prepared = dispatcher.prepare(req)
    outcome: Answer
    if isinstance(prepared, Invocation):
        try:
            value = prepared.spec.func(*prepared.args, **prepared.kwargs)
        except Exception as exc:
            outcome = dispatcher.answer_exception(req.method, req.id, req.is_notification, exc)
        else:
            outcome = dispatcher.answer(req.method, req.id, req.is_notification, value)
    else:
        outcome = prepared
    failed = isinstance(outcome, ErrorAnswer)
    line = outcome.line if isinstance(outcome, ErrorAnswer) else outcome
    if line is None:  # a notification: nothing goes on the wire, whatever the outcome
        assert req.is_notification
        return None
    assert b"\n" not in line
    answer = json.loads(line)
    assert failed == ("error" in answer), (outcome, answer)
    return answer


def call(methods: Methods | dict[str, Any], method: str, params: Any = None, rid: Any = 1) -> Any:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        obj["params"] = params
    return run(Dispatcher(Methods.coerce(methods)), obj)


def notify(methods: Methods | dict[str, Any], method: str, params: Any = None) -> Any:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    return run(Dispatcher(Methods.coerce(methods)), obj)


# -- the differential: fast path vs jsonrpcserver ----------------------------------------------

NAMES = ["a", "b", "c", "d", "e", "f", "g"]  # enough for 2 + 3 + 2 parameters


@st.composite
def signatures(draw: st.DrawFn) -> str:
    """The source of a handler with a generated signature that returns what it was bound to."""
    names = iter(NAMES)
    n_posonly = draw(st.integers(0, 2))
    n_pos = draw(st.integers(0, 3))
    n_positional = n_posonly + n_pos
    first_default = draw(st.integers(0, n_positional))  # positional params from here on have one
    parts: list[str] = []
    bound: list[str] = []
    for i in range(n_positional):
        name = next(names)
        bound.append(name)
        parts.append(f"{name}={i}" if i >= first_default else name)
        if i == n_posonly - 1:
            parts.append("/")
    varargs = draw(st.booleans())
    n_kwonly = draw(st.integers(0, 2))
    if varargs:
        parts.append("*args")
        bound.append("args")
    elif n_kwonly:
        parts.append("*")
    for i in range(n_kwonly):
        name = next(names)
        bound.append(name)
        parts.append(f"{name}={10 + i}" if draw(st.booleans()) else name)
    if draw(st.booleans()):
        parts.append("**kw")
        bound.append("kw")
    body = "{" + ", ".join(f"{n!r}: {n}" for n in bound) + "}"
    return f"def handler({', '.join(parts)}):\n    return {body}\n"


def make_handler(source: str) -> Any:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    return namespace["handler"]


params_strategy = (
    st.none()
    | st.lists(st.integers(0, 9), max_size=6)
    | st.dictionaries(
        st.sampled_from([*NAMES, "z", "args", "kw", "_jrpc_sink"]), st.integers(0, 9), max_size=6
    )
)


def jsonrpcserver_answer(handler: Any, obj: dict[str, Any]) -> Any:
    """What plain jsonrpcserver answers, with ``handler`` wrapped to return Success(...)."""

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        return Success(handler(*args, **kwargs))

    wrapped.__signature__ = inspect.signature(handler)  # type: ignore[attr-defined]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        answer = jsonrpcserver.dispatch_to_serializable(json.dumps(obj), methods={"m": wrapped})
    return json.loads(json.dumps(answer))  # as a client would see it (tuples become lists)


@settings(max_examples=700, deadline=None)
@given(
    source=signatures(),
    params=params_strategy,
    notification=st.booleans(),
    method=st.sampled_from(["m", "nope"]),
)
@example(
    source="def handler(a, /, **kw):\n    return {'a': a, 'kw': kw}\n",
    params={"a": 1},
    notification=False,
    method="m",
)
@example(source="def handler(*, a):\n    return {'a': a}\n", params=[1], notification=False, method="m")
@example(source="def handler(*args):\n    return {'args': args}\n", params=[], notification=False, method="m")
def test_fast_path_answers_exactly_as_jsonrpcserver(
    source: str, params: Any, notification: bool, method: str
) -> None:
    handler = make_handler(source)
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        obj["params"] = params
    if not notification:
        obj["id"] = 7
    methods = Methods({"m": handler})
    fast = run(Dispatcher(methods, fast_path=True), obj)
    reference = run(Dispatcher(methods, fast_path=False), obj)
    assert fast == reference
    assert fast == jsonrpcserver_answer(handler, obj)


@settings(max_examples=500, deadline=None)
@given(source=signatures(), params=params_strategy)
def test_the_generated_bind_is_signature_bind_exactly(source: str, params: Any) -> None:
    """The fast path's one generated function binds exactly when ``Signature.bind`` does, and
    the arguments it gives call the handler as the params would."""
    handler = make_handler(source)
    spec = Methods({"m": handler}).spec("m")
    assert spec is not None
    by_name = isinstance(params, dict)
    try:  # (bind() refuses a positional-only name with **kw, which a call would take: as jsonrpcserver)
        sig = inspect.signature(handler)
        sig.bind(**params) if by_name else sig.bind(*(params or ()))
    except TypeError:
        binds = False
    else:
        binds = True
    args = spec.bind(params)
    assert (args is not None) == binds == spec.shape.accepts(params)
    if args is not None:
        expected = handler(**params) if by_name else handler(*(params or ()))
        assert (handler(**args) if type(args) is dict else handler(*args)) == expected


def test_fast_path_positional_only_default_named_with_var_keyword() -> None:
    def handler(a: int = 0, /, **kw: Any) -> Any:
        return {"a": a, "kw": kw}

    obj = {"jsonrpc": "2.0", "method": "m", "params": {"a": 1}, "id": 7}
    methods = Methods({"m": handler})
    expected = jsonrpcserver_answer(handler, obj)
    assert expected["error"]["code"] == -32602
    assert run(Dispatcher(methods, fast_path=False), obj) == expected
    assert run(Dispatcher(methods, fast_path=True), obj) == expected


def test_differential_covers_success_and_invalid_params() -> None:
    """Guard against a vacuous differential: generated cases both bind and fail to bind."""
    codes: set[object] = set()

    @settings(max_examples=300, deadline=None, database=None)
    @given(source=signatures(), params=params_strategy)
    def probe(source: str, params: Any) -> None:
        obj: dict[str, Any] = {"jsonrpc": "2.0", "method": "m", "id": 1}
        if params is not None:
            obj["params"] = params
        answer = run(Dispatcher(Methods({"m": make_handler(source)})), obj)
        codes.add(answer["error"]["code"] if "error" in answer else "ok")

    probe()
    assert codes == {"ok", -32602}


def test_only_the_reference_pipeline_imports_jsonrpcserver() -> None:
    """Unknown methods and params that do not bind are answered without jsonrpcserver (it is
    imported by the first request ``fast_path=False`` sends through its pipeline): its import
    is ~6.6 MiB and ~0.1 s (specs/performance.md, "Memory")."""
    code = """if True:
        import json, sys
        from jrpc_unix import Methods
        from jrpc_unix._service.dispatch import Dispatcher
        from jrpc_unix._wire.messages import parse_line

        def handler(a: int, /, b: int = 2, *, c: int = 3) -> int:
            return a + b + c

        def answer(dispatcher, params):
            obj = {"jsonrpc": "2.0", "method": params.pop("method", "m"), "id": 1, **params}
            (req,) = parse_line(json.dumps(obj).encode(), 100).items
            call = dispatcher.prepare(req)
            if hasattr(call, "line"):
                return json.loads(call.line)["error"]["code"]
            return call.spec.func(*call.args, **call.kwargs)

        fast = Dispatcher(Methods({"m": handler}))
        got = [answer(fast, p) for p in ({"params": [1]}, {"params": {"a": 1}}, {"params": [1, 2, 3, 4]},
                                          {"params": {"b": 1}}, {"method": "nope"}, {"params": [1, "x"]})]
        print(got, "jsonrpcserver" in sys.modules)
        reference = Dispatcher(Methods({"m": handler}), fast_path=False)
        print(answer(reference, {"params": [1]}), "jsonrpcserver" in sys.modules)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[6, -32602, -32602, -32602, -32601, -32602] False", "6 True"]


def test_reference_path_with_a_parameter_named_sink() -> None:
    def handler(sink: int) -> int:
        return sink

    obj = {"jsonrpc": "2.0", "method": "m", "params": {"sink": 5}, "id": 1}
    methods = Methods({"m": handler})
    assert run(Dispatcher(methods, fast_path=True), obj) == {"jsonrpc": "2.0", "result": 5, "id": 1}
    assert run(Dispatcher(methods, fast_path=False), obj) == {"jsonrpc": "2.0", "result": 5, "id": 1}


def test_method_not_found_names_the_method() -> None:
    answer = call({"ping": lambda: "pong"}, "nope", rid="x")
    assert answer["id"] == "x"
    assert answer["error"]["code"] == -32601
    assert answer["error"]["message"] == "Method not found"
    assert answer["error"]["data"] == "nope"


def test_invalid_params_says_why() -> None:
    def subtract(minuend: int, subtrahend: int) -> int:
        return minuend - subtrahend

    assert call({"subtract": subtract}, "subtract", [42, 23])["result"] == 19
    assert call({"subtract": subtract}, "subtract", {"subtrahend": 23, "minuend": 42})["result"] == 19
    answer = call({"subtract": subtract}, "subtract", [1])
    assert answer["error"]["code"] == -32602
    assert answer["error"]["message"] == "Invalid params"
    assert "subtrahend" in answer["error"]["data"]


# -- Response (the seed-style answer) --------------------------------------------------------------


def test_response_ok_is_the_result() -> None:
    assert call({"m": lambda: Response.ok({"x": 1})}, "m") == {"jsonrpc": "2.0", "result": {"x": 1}, "id": 1}
    assert call({"m": lambda: Response(Status.OK, [1])}, "m")["result"] == [1]
    assert call({"m": lambda: Response()}, "m")["result"] is None


def test_response_fail_is_an_application_error() -> None:
    answer = call({"m": lambda: Response.fail("disk full")}, "m", rid=9)
    assert answer == {"jsonrpc": "2.0", "error": {"code": 1, "message": "disk full"}, "id": 9}
    answer = call({"m": lambda: Response.fail("nope", code=42, data={"k": [1]})}, "m")
    assert answer["error"] == {"code": 42, "message": "nope", "data": {"k": [1]}}
    answer = call({"m": lambda: Response(Status.FAIL, None, "")}, "m")
    assert answer["error"]["code"] == 1
    assert answer["error"]["message"]  # never an empty message


@pytest.mark.parametrize("code", [-32000, -32099, -32600, -32700, -32768])
def test_response_fail_with_a_reserved_code_raises(code: int) -> None:
    with pytest.raises(ValueError, match="reserved range"):
        Response.fail("x", code=code)
    with pytest.raises(ValueError, match="reserved range"):
        Response(Status.FAIL, None, "x", code)


@pytest.mark.parametrize("code", [-32769, -31999, 0, 1, 32000])
def test_response_fail_outside_the_reserved_range_is_allowed(code: int) -> None:
    assert call({"m": lambda: Response.fail("x", code=code)}, "m")["error"]["code"] == code


def test_response_status_must_be_a_status() -> None:
    with pytest.raises(TypeError):
        Response("OK")  # type: ignore[arg-type]


def test_failed_response_to_a_notification_gets_no_answer() -> None:
    assert notify({"m": lambda: Response.fail("x")}, "m") is None
    assert notify({"m": lambda: Response.ok(1)}, "m") is None


# -- jsonrpcserver's own results and exception ------------------------------------------------------


def test_jsonrpcserver_success() -> None:
    assert call({"m": lambda: Success([1, 2])}, "m")["result"] == [1, 2]


def test_jsonrpcserver_error() -> None:
    answer = call({"m": lambda: Error(7, "bad thing", {"why": 1})}, "m", rid="r")
    error = {"code": 7, "message": "bad thing", "data": {"why": 1}}
    assert answer == {"jsonrpc": "2.0", "error": error, "id": "r"}
    assert "data" not in call({"m": lambda: Error(7, "bad thing")}, "m")["error"]


def test_jsonrpcserver_invalid_params() -> None:
    answer = call({"m": lambda: InvalidParams("x must be positive")}, "m")
    assert answer["error"] == {"code": -32602, "message": "Invalid params", "data": "x must be positive"}


def test_jsonrpcserver_error_raised() -> None:
    def m() -> None:
        raise JsonRpcError(-32050, "custom", {"a": 1})

    assert call({"m": m}, "m")["error"] == {"code": -32050, "message": "custom", "data": {"a": 1}}


def test_rpc_error_raised() -> None:
    def m() -> None:
        raise RpcError(123, "app failure", [1])

    assert call({"m": m}, "m", rid=5) == {
        "jsonrpc": "2.0",
        "error": {"code": 123, "message": "app failure", "data": [1]},
        "id": 5,
    }


def test_jsonrpcserver_registry_can_be_served() -> None:
    """jsonrpcserver's registry is a plain dict of name -> function returning a Result."""
    registry: dict[str, Any] = {"ping": lambda: Success("pong"), "add": lambda a, b: Success(a + b)}
    assert call(registry, "ping")["result"] == "pong"
    assert call(registry, "add", [1, 2])["result"] == 3


# -- exceptions and unserializable results -----------------------------------------------------------


def test_exception_is_internal_error_without_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def m() -> None:
        raise RuntimeError("secret detail /etc/shadow")

    with caplog.at_level(logging.ERROR):
        answer = call({"m": m}, "m", rid="abc")
    assert answer["id"] == "abc"
    assert answer["error"]["code"] == -32603
    assert answer["error"]["message"] == "Internal error"
    wire = json.dumps(answer)
    assert "Traceback" not in wire
    assert "secret detail" not in wire
    assert "RuntimeError" not in wire
    error_id = answer["error"]["data"]["error_id"]
    # The traceback is in the server's log, under the same correlation id.
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged
    assert logged[0].exc_info is not None
    assert "secret detail" in caplog.text


def test_exception_in_a_notification_gets_no_answer(caplog: pytest.LogCaptureFixture) -> None:
    def m() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR):
        assert notify({"m": m}, "m") is None
    assert "boom" in caplog.text


@pytest.mark.parametrize(
    "value",
    [object(), {1, 2}, float("nan"), float("inf"), {"a": float("-inf")}, [b"bytes"]],
    ids=["object", "set", "nan", "inf", "nested-inf", "bytes"],
)
def test_unserializable_result_is_internal_error_with_the_request_id(value: Any) -> None:
    answer = call({"m": lambda: value}, "m", rid=2**70)
    assert answer["id"] == 2**70
    assert answer["error"]["code"] == -32603
    assert "result" not in answer


def test_unserializable_ok_payload_is_internal_error() -> None:
    assert call({"m": lambda: Response.ok(float("nan"))}, "m", rid="q")["error"]["code"] == -32603


# -- names: rpc.* reserved, the seed-style catch-all handler ------------------------------------------


def test_rpc_prefixed_names_are_reserved() -> None:
    methods = Methods()
    with pytest.raises(ValueError, match="reserved"):
        methods.register("rpc.discover", lambda: None)
    with pytest.raises(ValueError, match="reserved"):
        methods.add("rpc.x")(lambda: None)
    with pytest.raises(ValueError, match="reserved"):
        Methods({"rpc.y": lambda: None})
    methods.register("rpcx", lambda: 1)  # only the "rpc." prefix is reserved
    methods.register("my.rpc.thing", lambda: 2)
    assert set(methods) == {"rpcx", "my.rpc.thing"}


def test_unknown_rpc_name_is_method_not_found_even_with_a_catch_all() -> None:
    seen: list[Any] = []
    methods = Methods(handler=lambda cmd, args: seen.append(cmd) or Response.ok())
    assert call(methods, "rpc.nothing")["error"]["code"] == -32601
    assert seen == []


def test_seed_style_handler_routes_every_name() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(cmd: str, args: Any) -> Response:
        seen.append((cmd, args))
        if cmd == "fail":
            return Response.fail("no such thing", code=404)
        return Response.ok({"cmd": cmd, "args": args})

    methods = Methods(handler=handler)
    assert call(methods, "config.set", ["level", "debug"])["result"] == {
        "cmd": "config.set",
        "args": ["level", "debug"],
    }
    assert call(methods, "x", {"k": 1})["result"] == {"cmd": "x", "args": {"k": 1}}
    assert call(methods, "noargs")["result"] == {"cmd": "noargs", "args": None}
    assert call(methods, "fail")["error"] == {"code": 404, "message": "no such thing"}
    assert notify(methods, "quiet", [1]) is None
    assert seen[-1] == ("quiet", [1])


def test_registered_names_win_over_the_catch_all() -> None:
    methods = Methods({"ping": lambda: "pong"}, handler=lambda cmd, args: Response.ok("fallback"))
    assert call(methods, "ping")["result"] == "pong"
    assert call(methods, "other")["result"] == "fallback"


# -- the registry ---------------------------------------------------------------------------------------


def test_methods_is_a_read_only_mapping() -> None:
    methods = Methods()

    @methods.add
    def ping() -> str:
        return "pong"

    @methods.add("config.set")
    def config_set(key: str, value: Any) -> None: ...

    assert list(methods) == ["ping", "config.set"]
    assert len(methods) == 2
    assert methods["ping"] is ping
    assert "config.set" in methods
    assert Methods.coerce(methods) is methods
    assert set(Methods.coerce({"a": ping})) == {"a"}


def test_registration_errors() -> None:
    methods = Methods()
    with pytest.raises(ValueError, match="non-empty"):
        methods.register("", lambda: None)
    with pytest.raises(TypeError, match="not callable"):
        methods.register("x", 42)  # type: ignore[arg-type]

    async def a() -> None: ...

    with pytest.raises(ValueError, match="async function cannot be blocking"):
        methods.register("a", a, blocking=True)


def test_notifications_never_get_an_answer() -> None:
    methods = {"m": lambda x: x}
    assert notify(methods, "nope") is None  # unknown method
    assert notify(methods, "m", [1, 2, 3]) is None  # bad params
    assert notify(methods, "m", [1]) is None  # success


def test_the_outcome_says_whether_a_notification_failed() -> None:
    """A notification is never answered, but its outcome still says how it went (for rpc.stats)."""
    dispatcher = Dispatcher(Methods.coerce({"m": lambda x: x, "fail": lambda: Response.fail("no")}))
    unknown = dispatcher.prepare(Request("nope", None, None, True))
    assert isinstance(unknown, ErrorAnswer)
    assert unknown.line is None
    assert unknown.reason == ""  # counted per method, not as a refusal
    assert dispatcher.answer("m", None, True, 1) is None  # success: nothing at all
    failed = dispatcher.answer("fail", None, True, Response.fail("no"))
    assert isinstance(failed, ErrorAnswer)
    assert failed.line is None
    crashed = dispatcher.answer_exception("m", None, True, RuntimeError("x"))
    assert isinstance(crashed, ErrorAnswer)
    assert crashed.line is None


def test_an_unserializable_result_is_an_error_outcome() -> None:
    dispatcher = Dispatcher(Methods.coerce({"m": lambda: object()}))
    outcome = dispatcher.answer("m", 1, False, object())
    assert isinstance(outcome, ErrorAnswer)
    assert outcome.line is not None
    assert json.loads(outcome.line)["error"]["code"] == -32603
