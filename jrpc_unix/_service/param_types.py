"""A handler's parameter types: the checks of its annotated parameters, and a generated test.

Built once per method from its signature and type hints (:mod:`jrpc_unix._service.types` makes
each check); its expressions go into the method's generated ``MethodSpec.bind``, which the
dispatcher and the server's fast path ask on every call; :meth:`ParamTypes.problem` is asked
only for the -32602 answer. :attr:`ParamTypes.fits` is the same test alone, the readable
reference a property test holds ``bind`` to.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .types import Check, compile_check

__all__ = ["ParamTypes", "compile_test"]

_ABSENT = object()


def _terms(
    positional: list[tuple[str, Check | None]],
    named: dict[str, Check],
    var_positional: Check | None,
    env: dict[str, Any],
) -> tuple[str, str]:
    """Two expressions over params ``p`` that bind: by name (a dict) and by position (a list,
    ``n = len(p)``), true when every annotated parameter's value has the right type.

    Generated code because it runs on every call to a method with hints: a scalar's check is
    then one ``type(x) in T`` with no Python call, several times cheaper than a loop over checks
    (specs/settings.md §7; ``benchmarks/micro.py --only "param types"``).
    """

    def term(check: Check, value: str, k: str) -> str:
        if check.types is not None:
            env["T" + k] = check.types
            return f"type({value}) in T{k}"
        env["F" + k] = check.test
        return f"F{k}({value}) is None"

    by_position = [
        f"(n <= {i} or {term(c, f'p[{i}]', str(i))})" for i, (_, c) in enumerate(positional) if c is not None
    ]
    if var_positional is not None:
        rest = f"p[{len(positional)}:]" if positional else "p"
        if var_positional.types is not None:  # no Python-level loop: a set method over map()
            env["TV"] = var_positional.types
            by_position.append(f"TV.issuperset(map(type, {rest}))")
        else:
            by_position.append(f"all({term(var_positional, 'x', 'v')} for x in {rest})")
    by_name = [
        f"((v := p.get({name!r}, A)) is A or {term(c, 'v', f'n{i}')})"
        for i, (name, c) in enumerate(named.items())
    ]
    env["A"] = _ABSENT
    return " and ".join(by_name) or "True", " and ".join(by_position) or "True"


def compile_test(name: str, body: str, env: dict[str, Any]) -> Callable[[Any], bool]:
    """``def NAME(p): BODY`` compiled in ``env``: the generated checks' one way in."""
    exec(f"def {name}(p):\n{body}", env)
    test: Callable[[Any], bool] = env[name]
    return test


class ParamTypes:
    """The checks of a handler's annotated parameters, by position and by name.

    For params that already bind (the shape check passed): :attr:`fits` says quickly whether
    their types are right; :meth:`problem` says what is wrong: ``"minuend: expected a number,
    got string"`` (several joined by ``"; "``), or None.
    """

    __slots__ = (
        "by_name",
        "by_position",
        "env",
        "fits",
        "named",
        "positional",
        "var_keyword",
        "var_positional",
    )

    def __init__(
        self,
        positional: list[tuple[str, Check | None]],
        named: dict[str, Check],
        var_positional: tuple[str, Check] | None,
        var_keyword: Check | None,
    ) -> None:
        self.positional = positional
        self.named = named
        self.var_positional = var_positional
        self.var_keyword = var_keyword
        #: The generated tests' names (see :func:`_terms`) and the expressions over params
        #: ``p`` that bind: by name, and by position with ``n = len(p)``.
        self.env: dict[str, Any] = {}
        if var_keyword is None:
            star = None if var_positional is None else var_positional[1]
            self.by_name, self.by_position = _terms(positional, named, star, self.env)
        else:  # **kwargs with a type: the general loop
            self.env["PROBLEM"] = self.problem
            self.by_name = self.by_position = "PROBLEM(p) is None"
        self.fits = compile_test(
            "fits",
            "    if not p:\n        return True\n"
            f"    if type(p) is dict:\n        return {self.by_name}\n"
            f"    n = len(p)\n    return {self.by_position}\n",
            self.env,
        )

    @classmethod
    def of(cls, sig: inspect.Signature, hints: dict[str, Any]) -> ParamTypes | None:
        """The checks of a signature; None when no parameter has a checkable annotation."""
        P = inspect.Parameter
        positional: list[tuple[str, Check | None]] = []
        named: dict[str, Check] = {}
        var_positional: tuple[str, Check] | None = None
        var_keyword: Check | None = None
        for p in sig.parameters.values():
            check = compile_check(hints.get(p.name, p.annotation))
            if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
                positional.append((p.name, check))
            if check is None:
                continue
            if p.kind in (P.POSITIONAL_OR_KEYWORD, P.KEYWORD_ONLY):
                named[p.name] = check
            elif p.kind is P.VAR_POSITIONAL:
                var_positional = (p.name, check)
            elif p.kind is P.VAR_KEYWORD:
                var_keyword = check
        if not named and var_positional is None and var_keyword is None and not any(c for _, c in positional):
            return None
        return cls(positional, named, var_positional, var_keyword)

    def problem(self, params: list[Any] | tuple[Any, ...] | dict[str, Any] | None) -> str | None:
        """Why these (binding) params have the wrong types, or None if they do not."""
        if not params:
            return None
        reasons: list[str] = []
        if isinstance(params, dict):
            for name, value in params.items():
                check = self.named.get(name, self.var_keyword)
                reason = None if check is None else check.test(value)
                if reason is not None:
                    reasons.append(f"{name}: {reason}")
            return "; ".join(reasons) if reasons else None
        positional = self.positional
        for i, value in enumerate(params):
            if i < len(positional):
                name, check = positional[i]
            elif self.var_positional is not None:
                name, check = f"{self.var_positional[0]}[{i - len(positional)}]", self.var_positional[1]
            else:
                break
            reason = None if check is None else check.test(value)
            if reason is not None:
                reasons.append(f"{name}: {reason}")
        return "; ".join(reasons) if reasons else None
