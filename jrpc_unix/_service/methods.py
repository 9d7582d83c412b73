"""The method registry: JSON-RPC method names -> handlers, with how each one runs.

A :class:`Methods` is a read-only ``Mapping[str, Callable]``, the shape of jsonrpcserver's own
registry, so either can be served. What it adds per method is decided once, at registration:

* how it runs: ``async def`` is awaited; a plain function runs on the event loop (it must be
  quick), or in a worker thread when registered with ``blocking=True``;
* its parameter check, precomputed from the signature so a well-formed call binds without
  ``inspect.Signature.bind`` (several times the cost); a call that fails the check goes to
  jsonrpcserver's own pipeline (see :mod:`jrpc_unix._service.dispatch`) for the exact error it
  would give;
* the type checks of its annotated parameters (:class:`~jrpc_unix._service.param_types.ParamTypes`):
  params that bind but have the wrong types get -32602 naming the parameter and the reason.

A seed-style ``handler(cmd, args) -> Response`` can stand behind every name not registered
(``Methods(handler=...)``), so code written for the Go original ports line by line.
"""

from __future__ import annotations

import enum
import inspect
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from .access import Access
from .param_types import ParamTypes, compile_test
from .types import hints_of

__all__ = ["MethodSpec", "Methods", "RunMode"]

Handler = Callable[..., Any]
_P = inspect.Parameter


class RunMode(enum.Enum):
    SYNC = "sync"  # called on the event loop
    ASYNC = "async"  # awaited on the event loop
    THREAD = "thread"  # called in a worker thread


@dataclass(frozen=True, slots=True)
class _Shape:
    """What a signature accepts, for the fast parameter check.

    Stored in the form the check needs (bounds and name sets), so that checking a call is a
    couple of comparisons: it runs on every request.
    """

    #: No params (absent, ``[]`` or ``{}``) bind: nothing is required.
    accepts_none: bool
    #: By position, ``min_positional <= len(params) <= max_positional`` bind (-1: never, a
    #: keyword-only parameter is required; ``sys.maxsize`` with ``*args``).
    min_positional: int
    max_positional: int
    #: False when a positional-only parameter is required: named params never bind.
    by_name: bool
    required_keywords: frozenset[str]
    #: The names params may use; None with ``**kwargs`` (any name but a positional-only one).
    keyword_names: frozenset[str] | None
    positional_only_names: frozenset[str]
    #: The names in signature order when every parameter but ``*args`` can be given both by
    #: position and by name: params naming them all are then passed by position (cheaper).
    in_order: tuple[str, ...] | None

    @classmethod
    def of(cls, sig: inspect.Signature) -> _Shape:
        params = list(sig.parameters.values())
        positional = [p for p in params if p.kind in (_P.POSITIONAL_ONLY, _P.POSITIONAL_OR_KEYWORD)]
        by_name = [p for p in params if p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.KEYWORD_ONLY)]
        n_required_positional = sum(p.default is _P.empty for p in positional)
        keyword_only_required = any(p.kind is _P.KEYWORD_ONLY and p.default is _P.empty for p in params)
        var_positional = any(p.kind is _P.VAR_POSITIONAL for p in params)
        var_keyword = any(p.kind is _P.VAR_KEYWORD for p in params)
        return cls(
            accepts_none=n_required_positional == 0 and not keyword_only_required,
            min_positional=n_required_positional,
            max_positional=(
                -1 if keyword_only_required else sys.maxsize if var_positional else len(positional)
            ),
            by_name=not any(p.kind is _P.POSITIONAL_ONLY and p.default is _P.empty for p in params),
            required_keywords=frozenset(p.name for p in by_name if p.default is _P.empty),
            keyword_names=None if var_keyword else frozenset(p.name for p in by_name),
            positional_only_names=frozenset(p.name for p in params if p.kind is _P.POSITIONAL_ONLY),
            in_order=(
                tuple(p.name for p in positional)
                if all(p.kind in (_P.POSITIONAL_OR_KEYWORD, _P.VAR_POSITIONAL) for p in params)
                else None
            ),
        )

    def accepts(self, params: list[Any] | dict[str, Any] | None) -> bool:
        """True only if ``Signature.bind`` would accept these params (never a false yes): the
        rule :meth:`binder` writes out, kept readable here as the reference a test holds it to."""
        if not params:  # None, [] or {}
            return self.accepts_none
        if not isinstance(params, dict):
            return self.min_positional <= len(params) <= self.max_positional
        keys = params.keys()
        if not self.by_name or not keys >= self.required_keywords:
            return False
        if self.keyword_names is not None:  # (its names never include a positional-only one)
            return keys <= self.keyword_names
        return self.positional_only_names.isdisjoint(keys)  # bind() refuses them by name

    def binder(self, types: ParamTypes | None) -> Callable[[Any], Any]:
        """One generated function for the fast path: :meth:`accepts` and ``types.fits``
        together, giving the arguments to call with.

        For params (None, a list or a dict) that bind with the right types: a tuple or list to
        pass by position (a dict naming every parameter in :attr:`in_order` becomes a tuple),
        else the dict to pass by name; None when they do not bind or a type is wrong. Written
        out as plain comparisons: it runs on every request, and ``f(*args)`` costs a third of
        ``f(**params)``.
        """
        env: dict[str, Any] = {} if types is None else dict(types.env)
        by_name, by_position = ("True", "True") if types is None else (types.by_name, types.by_position)
        named = "p"
        if not self.by_name:
            dict_test = "False"
        elif self.keyword_names is None:  # **kwargs: any name but a positional-only one
            env["R"], env["PO"] = self.required_keywords, self.positional_only_names
            dict_test = f"p.keys() >= R and PO.isdisjoint(p) and {by_name}"
        else:  # each required name present; the count says no other name is (a dict lookup each)
            required = sorted(self.required_keywords)
            optional = sorted(self.keyword_names - self.required_keywords)
            count = " + ".join([str(len(required)), *(f"({name!r} in p)" for name in optional)])
            present = [f"{name!r} in p" for name in required]
            dict_test = " and ".join([*present, f"len(p) == {count}", by_name])
            if self.in_order:
                every = "(" + "".join(f"p[{name!r}], " for name in self.in_order) + ")"
                named = every if not optional else f"({every} if len(p) == {len(self.in_order)} else p)"
        return compile_test(
            "bind",
            f"    if not p:\n        return {'()' if self.accepts_none else None}\n"
            f"    if type(p) is dict:\n        return {named} if {dict_test} else None\n"
            f"    n = len(p)\n"
            f"    ok = {self.min_positional} <= n <= {self.max_positional} and {by_position}\n"
            "    return p if ok else None\n",
            env,
        )


@dataclass(frozen=True, slots=True)
class MethodSpec:
    """One registered method and how to run it."""

    name: str
    func: Handler
    mode: RunMode
    signature: inspect.Signature
    shape: _Shape
    #: The caller's access level this method needs (see :class:`~jrpc_unix.Policy`).
    access: Access = Access.OPERATE
    #: Seconds before the handler is cancelled (async and blocking handlers); None: the server's.
    timeout: float | None = None
    #: Keep running when the caller disconnects (reconfiguration usually should).
    run_to_completion: bool = False
    #: Run at once, outside the connection's ordering (the server's own ``rpc.cancel``).
    immediate: bool = False
    #: The type checks of its annotated parameters; None when it has none (all free).
    types: ParamTypes | None = None
    #: Parameters the audit log shows as ``"***"`` (passwords, tokens): specs/operations.md.
    secret: frozenset[str] = frozenset()
    #: The arguments to call with for these params, or None if they do not bind or have the
    #: wrong types (``shape`` and ``types`` in one generated function, for the server's fast
    #: path: see :meth:`_Shape.binder`).
    bind: Callable[[Any], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "bind", self.shape.binder(self.types))  # (frozen)

    @classmethod
    def build(
        cls,
        name: str,
        func: Handler,
        *,
        blocking: bool = False,
        access: Access = Access.OPERATE,
        timeout: float | None = None,
        run_to_completion: bool = False,
        immediate: bool = False,
        secret: Iterable[str] = (),
    ) -> MethodSpec:
        if not callable(func):
            raise TypeError(f"method {name!r}: {func!r} is not callable")
        is_async = inspect.iscoroutinefunction(func)
        if is_async and blocking:
            raise ValueError(f"method {name!r}: an async function cannot be blocking=True")
        mode = RunMode.ASYNC if is_async else RunMode.THREAD if blocking else RunMode.SYNC
        sig = inspect.signature(func)
        if timeout is not None and timeout <= 0:
            raise ValueError(f"method {name!r}: timeout must be positive, not {timeout!r}")
        if timeout is not None and mode is RunMode.SYNC:
            raise ValueError(
                f"method {name!r}: timeout= cannot be enforced on a plain function (it runs on the "
                "server's loop and cannot be interrupted); make it async, or blocking=True"
            )
        types = ParamTypes.of(sig, hints_of(func))
        secret = frozenset(secret)
        if unknown := secret - sig.parameters.keys():
            raise ValueError(f"method {name!r}: secret names no parameter: {', '.join(sorted(unknown))}")
        return cls(
            name,
            func,
            mode,
            sig,
            _Shape.of(sig),
            Access(access),
            timeout,
            run_to_completion,
            immediate,
            types,
            secret,
        )


class Methods(Mapping[str, Handler]):
    """A registry of JSON-RPC methods; see the module docstring.

    >>> methods = Methods()
    >>> @methods.add
    ... def ping() -> str:
    ...     return "pong"
    >>> @methods.add("config.set", blocking=True)
    ... def config_set(key: str, value: object) -> None: ...
    """

    def __init__(
        self,
        methods: Mapping[str, Handler] | None = None,
        *,
        handler: Callable[[str, Any], Any] | None = None,
    ) -> None:
        self._specs: dict[str, MethodSpec] = {}
        self.handler = handler
        #: Topics this service publishes to: name -> (description, producer, access), the
        #: last two None when not given.
        self.topics: dict[str, tuple[str, Callable[..., Any] | None, Access | None]] = {}
        for name, func in (methods or {}).items():
            self.register(name, func)

    @classmethod
    def coerce(cls, methods: Methods | Mapping[str, Handler]) -> Methods:
        """Accept a Methods, or any name -> function mapping (jsonrpcserver's registry too)."""
        return methods if isinstance(methods, Methods) else cls(methods)

    def register(self, name: str, func: Handler, *, replace: bool = False, **options: Any) -> MethodSpec:
        """Register ``func`` as method ``name``; names starting ``rpc.`` are reserved.

        ``options`` are :meth:`MethodSpec.build`'s: ``blocking``, ``access``, ``timeout``,
        ``run_to_completion``. A name registered already raises ValueError unless
        ``replace=True``: two handlers for one name is a mistake far more often than a wish.
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"method name must be a non-empty string, not {name!r}")
        if name.startswith("rpc."):
            raise ValueError(f"method name {name!r}: names starting with 'rpc.' are reserved")
        if name in self._specs and not replace:
            raise ValueError(f"method {name!r} is registered already (replace=True to replace it)")
        spec = MethodSpec.build(name, func, **options)
        self._specs[name] = spec
        return spec

    @overload
    def add(self, func: Handler, /) -> Handler: ...
    @overload
    def add(self, name: str | None = None, /, **options: Any) -> Callable[[Handler], Handler]: ...

    def add(
        self, name: Handler | str | None = None, /, **options: Any
    ) -> Handler | Callable[[Handler], Handler]:
        """Decorator: ``@methods.add``, ``@methods.add("config.set")``, ``@methods.add(blocking=True)``.

        Options: ``blocking`` (run in a worker thread), ``access`` (the :class:`Access` level
        needed), ``timeout`` (seconds), ``run_to_completion`` (survive the caller's disconnect),
        ``secret`` (parameter names the audit log redacts),
        ``replace`` (replace a method of that name instead of raising).
        """
        if callable(name):
            self.register(name.__name__, name)
            return name

        def decorator(func: Handler) -> Handler:
            self.register(name or func.__name__, func, **options)
            return func

        return decorator

    def add_topic(
        self,
        name: str,
        description: str = "",
        producer: Callable[..., Any] | None = None,
        *,
        access: Access | None = None,
    ) -> None:
        """Declare a topic the service publishes to, so every server of these methods has it.

        Without ``producer`` the handlers feed it (``current_context().server.publish``); with
        one, ``producer(**params)`` gives each subscription its own async iterator of events
        (see :meth:`jrpc_unix.Server.add_topic`). ``access``: the level a caller needs to
        subscribe; by default the highest any of the service's methods needs, and at least
        ``OPERATE`` (any handler may publish to it, so it is guarded like the most guarded one).
        """
        if name in self.topics:
            raise ValueError(f"topic {name!r} is declared already")
        self.topics[name] = (description, producer, None if access is None else Access(access))

    def spec(self, name: str) -> MethodSpec | None:
        """The registered method called ``name``, or None."""
        return self._specs.get(name)

    def specs(self) -> list[MethodSpec]:
        return list(self._specs.values())

    def topic_access(self) -> Access:
        """The level a topic that declares none needs: the highest any method needs (a
        ``handler`` fallback counts as ``OPERATE``), and never below ``OPERATE``."""
        return Access(max([Access.OPERATE, *(spec.access for spec in self._specs.values())]))

    def __getitem__(self, name: str) -> Handler:
        return self._specs[name].func

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Methods({sorted(self._specs)!r})"
