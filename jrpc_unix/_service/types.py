"""Checking JSON values against Python type hints: one compiled check per annotation.

Method parameters and settings are declared with standard typing; this module turns an
annotation (plus a setting's constraints) into a :class:`Check` once, at registration, so that
checking a value on every call is a few ``type(v) is ...`` tests. The standard library is
enough: the values are already parsed JSON, so there is nothing to convert, only to check; why
not msgspec or pydantic, with figures: specs/settings.md §8.

What is checked: ``bool``, ``int`` (never a bool, never 1.0), ``float`` (an int is a number
too), ``str``, ``None``, ``Literal[...]``, enums (by value), ``list[X]``/``Sequence[X]``/
``tuple[...]``, ``dict[str, X]``/``Mapping``, ``TypedDict`` (nested objects) and unions of
those. Anything else (``Any``, ``object``, a class with no JSON form, an annotation that does
not resolve) is free: its values reach the handler unchecked, as before.
"""

from __future__ import annotations

import enum
import inspect
import re
import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["Check", "Test", "compile_check", "hints_of", "json_type"]

_JSON_NAMES: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def hints_of(func: Callable[..., Any]) -> dict[str, Any]:
    """The resolved annotations of ``func``; ``{}`` when a name does not resolve."""
    try:
        return typing.get_type_hints(func)
    except Exception:  # a name that does not resolve, or a callable without annotations
        return {}


def json_type(value: Any) -> str:
    """The JSON name of a value's type ("string", "number", ...), for error reasons."""
    return _JSON_NAMES.get(type(value)) or type(value).__name__


Test = Callable[[Any], str | None]


class Check:
    """``check.test(value)`` is None when the value fits, else the reason ("expected ..., got ...")."""

    __slots__ = ("test", "types", "what")

    def __init__(self, what: str, test: Test, types: frozenset[type] | None = None) -> None:
        self.what = what  # "a number", "one of 'a', 'b'": for reasons of unions and lists
        self.test = test
        #: When the check is only "its type is one of these": the fast test inlines it.
        self.types = types


def _by_type(what: str, *allowed: type) -> Check:
    if len(allowed) == 1:
        (only,) = allowed

        def test(v: Any) -> str | None:
            return None if type(v) is only else f"expected {what}, got {json_type(v)}"
    else:

        def test(v: Any) -> str | None:
            return None if type(v) in allowed else f"expected {what}, got {json_type(v)}"

    return Check(what, test, frozenset(allowed))


_SCALARS: dict[Any, Check] = {
    str: _by_type("a string", str),
    int: _by_type("an integer", int),
    float: _by_type("a number", int, float),
    bool: _by_type("a boolean", bool),
    type(None): _by_type("null", type(None)),
    None: _by_type("null", type(None)),
    list: _by_type("an array", list),
    tuple: _by_type("an array", list),
    dict: _by_type("an object", dict),
}


def _one_of(values: list[Any]) -> Check:
    allowed = [(type(v), v) for v in values]
    what = "one of " + ", ".join(repr(v) for v in values)

    def test(v: Any) -> str | None:
        return None if (type(v), v) in allowed else f"expected {what}, got {v!r}"

    return Check(what, test)


def _items(outer: Check, item: Check | None, *, values: bool = False) -> Check:
    """An array (or object, ``values=True``) whose items (values) each pass ``item``."""
    if item is None:
        return outer

    def test(v: Any) -> str | None:
        reason = outer.test(v)
        if reason is not None:
            return reason
        pairs = v.items() if values else enumerate(v)
        for key, x in pairs:
            reason = item.test(x)
            if reason is not None:
                return f"[{key!r}]: {reason}" if values else f"[{key}]: {reason}"
        return None

    return Check(f"{outer.what} of {item.what}", test)


def _union(checks: list[Check]) -> Check:
    what = " or ".join(c.what for c in checks)

    def test(v: Any) -> str | None:
        for c in checks:
            if c.test(v) is None:
                return None
        if len(others) == 1 and v is not None:  # Optional[X]: X's own reason says more
            return others[0].test(v)
        return f"expected {what}, got {json_type(v)}"

    others = [c for c in checks if c.types != frozenset((type(None),))]

    sets = [c.types for c in checks]
    return Check(what, test, None if None in sets else frozenset().union(*sets))  # type: ignore[arg-type]


def _typed_dict(annotation: Any) -> Check | None:
    hints = typing.get_type_hints(annotation)
    fields = {k: compile_check(t) for k, t in hints.items()}
    required = frozenset(annotation.__required_keys__)
    outer = _SCALARS[dict]

    def test(v: Any) -> str | None:
        reason = outer.test(v)
        if reason is not None:
            return reason
        missing = sorted(required - v.keys())
        if missing:
            return f"missing {', '.join(missing)}"
        for key, x in v.items():  # other keys pass, as in its JSON Schema (an open object)
            c = fields.get(key)
            reason = None if c is None else c.test(x)
            if reason is not None:
                return f"{key}: {reason}"
        return None

    return Check(f"an object ({', '.join(fields)})", test)


def _free(annotation: Any) -> bool:
    return annotation in (inspect.Parameter.empty, Any, object) or isinstance(annotation, str)


def _structural(annotation: Any) -> Check | None:
    """The check of an annotation, without constraints; None: anything passes."""
    if _free(annotation):
        return None
    if annotation in _SCALARS:
        return _SCALARS[annotation]
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _one_of([m.value for m in annotation])
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _structural(args[0])
    if origin is typing.Literal:
        return _one_of(list(args))
    if origin in (typing.Union, types.UnionType):
        parts = [_structural(a) for a in args]
        return None if any(p is None for p in parts) else _union([p for p in parts if p is not None])
    sequence = origin in (list, set, frozenset) or _is_abc(origin, "Sequence", "Iterable", "Set")
    if sequence or (origin is tuple and len(args) == 2 and args[1] is Ellipsis):
        return _items(_SCALARS[list], _structural(args[0]) if args else None)
    if origin is tuple:
        return _SCALARS[list]  # a fixed-length tuple: an array (its items are free)
    if origin is dict or _is_abc(origin, "Mapping", "MutableMapping"):
        return _items(_SCALARS[dict], _structural(args[1]) if len(args) == 2 else None, values=True)
    if typing.is_typeddict(annotation):
        return _typed_dict(annotation)
    return None  # a class with no JSON form: free, as an unannotated parameter


def _is_abc(origin: Any, *names: str) -> bool:
    return getattr(origin, "__module__", "") == "collections.abc" and origin.__name__ in names


def compile_check(
    annotation: Any,
    *,
    ge: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
) -> Check | None:
    """The :class:`Check` of ``annotation`` with a setting's constraints; None: anything passes.

    ``ge``/``le`` bound a number; ``min_length``/``max_length`` a string's or array's length;
    ``pattern`` a string (``re.fullmatch``).
    """
    base = _structural(annotation)
    limits: list[Test] = []
    if ge is not None:
        limits.append(lambda v: None if not _number(v) or v >= ge else f"must be >= {ge}, got {v!r}")
    if le is not None:
        limits.append(lambda v: None if not _number(v) or v <= le else f"must be <= {le}, got {v!r}")
    if min_length is not None:
        limits.append(
            lambda v: None if not _sized(v) or len(v) >= min_length else f"must be at least {min_length} long"
        )
    if max_length is not None:
        limits.append(
            lambda v: None if not _sized(v) or len(v) <= max_length else f"must be at most {max_length} long"
        )
    if pattern is not None:
        regex = re.compile(pattern)
        limits.append(
            lambda v: (
                None if type(v) is not str or regex.fullmatch(v) else f"must match the pattern {pattern!r}"
            )
        )
    if not limits:
        return base

    def test(v: Any) -> str | None:
        reason = None if base is None else base.test(v)
        for limit in limits:
            if reason is not None:
                return reason
            reason = limit(v)
        return reason

    return Check("a value" if base is None else base.what, test)


def _number(v: Any) -> bool:
    return type(v) in (int, float)


def _sized(v: Any) -> bool:
    return type(v) in (str, list, dict)
