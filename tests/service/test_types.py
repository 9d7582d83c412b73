"""Value checks compiled from type hints (issue 12), property-based: a compiled check accepts
exactly what the JSON Schema ``rpc.discover`` publishes for the same annotation accepts
(``jsonschema`` is the reference), and its reasons name what was expected and what came.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal, TypedDict

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st

from jrpc_unix._service.discover import schema_of
from jrpc_unix._service.types import compile_check


class Point(TypedDict):
    x: int
    y: float


SCALARS: list[Any] = [int, float, str, bool, type(None), Literal["a", "b"], Literal[1, 2]]


def annotations() -> st.SearchStrategy[Any]:
    base = st.sampled_from([*SCALARS, Point])
    return st.recursive(
        base,
        lambda inner: st.one_of(
            inner.map(lambda t: list[t]),  # type: ignore[valid-type]
            inner.map(lambda t: dict[str, t]),  # type: ignore[valid-type]
            st.tuples(inner, inner).map(lambda ts: ts[0] | ts[1]),
        ),
        max_leaves=4,
    )


# JSON values, without integral floats (JSON Schema counts 1.0 as an integer; a handler
# declared ``int`` would get a float, so the check refuses it: tested on its own below).
floats = st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | floats | st.sampled_from(["a", "b", "x", ""]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["x", "y", "z"]), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=600, deadline=None)
@given(annotation=annotations(), value=json_values)
def test_a_check_agrees_with_the_published_json_schema(annotation: Any, value: Any) -> None:
    check = compile_check(annotation)
    assert check is not None
    schema = schema_of(annotation)
    expected = jsonschema.Draft202012Validator(schema).is_valid(value)
    reason = check.test(value)
    assert (reason is None) == expected, (annotation, value, schema, reason)
    if reason is not None:
        assert reason.startswith(("expected ", "missing ", "[")) or ": " in reason


@settings(max_examples=200, deadline=None)
@given(value=st.integers(-100, 100) | floats)
def test_constraints_bound_numbers(value: float) -> None:
    check = compile_check(float, ge=-10, le=10)
    assert check is not None
    assert (check.test(value) is None) == (-10 <= value <= 10)


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=12))
def test_constraints_bound_strings(value: str) -> None:
    check = compile_check(str, min_length=1, max_length=8, pattern="[a-z]*")
    assert check is not None
    assert (check.test(value) is None) == (1 <= len(value) <= 8 and re.fullmatch("[a-z]*", value) is not None)


def test_reasons() -> None:
    def reason(annotation: Any, value: Any, **c: Any) -> str | None:
        check = compile_check(annotation, **c)
        assert check is not None
        return check.test(value)

    assert reason(float, "1") == "expected a number, got string"
    assert reason(int, 1.0) == "expected an integer, got number"
    assert reason(int, True) == "expected an integer, got boolean"
    assert reason(list[int], [1, "2"]) == "[1]: expected an integer, got string"
    assert reason(dict[str, bool], {"k": 0}) == "['k']: expected a boolean, got integer"
    assert reason(Point, {"x": 1}) == "missing y"
    assert reason(Point, {"x": 1, "y": "2", "z": 3}) == "y: expected a number, got string"
    assert reason(int | None, "x") == "expected an integer, got string"
    assert reason(int, 65, ge=1, le=64) == "must be <= 64, got 65"
    assert reason(str, "", min_length=1) == "must be at least 1 long"
    assert math.isnan(float("nan"))  # (NaN never arrives: JSON has none)
    assert compile_check(Any) is None
    assert compile_check(object) is None


def _typed(a: int, b: str = "", *rest: float, c: bool = False) -> None: ...
def _literal(a: Literal["x", "y"], b: list[int] | None = None, *rest: Point) -> None: ...


@settings(max_examples=400, deadline=None)
@given(
    handler=st.sampled_from([_typed, _literal]),
    params=st.lists(json_values, max_size=5)
    | st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values, max_size=3),
)
def test_the_generated_fits_agrees_with_problem(handler: Any, params: Any) -> None:
    """The fast test and the reasons never disagree (the fast path trusts the one, answers the other)."""
    import inspect

    from jrpc_unix._service.param_types import ParamTypes
    from jrpc_unix._service.types import hints_of

    types = ParamTypes.of(inspect.signature(handler), hints_of(handler))
    assert types is not None
    assert types.fits(params) == (types.problem(params) is None)


@settings(max_examples=400, deadline=None)
@given(
    handler=st.sampled_from([_typed, _literal]),
    params=st.lists(json_values, max_size=5)
    | st.dictionaries(st.sampled_from(["a", "b", "c", "rest"]), json_values, max_size=3),
)
def test_the_generated_bind_is_accepts_and_fits(handler: Any, params: Any) -> None:
    """The fast path's one test is the shape check and the type check together."""
    from jrpc_unix import Methods

    spec = Methods({"m": handler}).spec("m")
    assert spec is not None
    assert spec.types is not None
    assert (spec.bind(params) is not None) == (spec.shape.accepts(params) and spec.types.fits(params))
