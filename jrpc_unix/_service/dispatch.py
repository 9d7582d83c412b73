"""The adapter between a parsed request and a handler, over jsonrpcserver. No I/O here.

:meth:`Dispatcher.prepare` resolves a :class:`~jrpc_unix._wire.messages.Request` to an
:class:`Invocation` (handler + arguments), or to its error answer (params that bind are then
checked against the handler's type hints: -32602 naming the parameter and the reason). The
server runs it however its :class:`~jrpc_unix._service.methods.RunMode` says, then hands the
return value or exception to :meth:`Dispatcher.answer` / :meth:`Dispatcher.answer_exception`,
which encode the outcome (an :data:`~jrpc_unix._wire.messages.Answer`: it says whether it is an
error).

jsonrpcserver stays the reference. Its results (``Success``, ``Error``, ``InvalidParams``) and
``JsonRpcError`` are understood, its registry can be served, and every request the fast path does
not settle (an unknown method, params that do not bind; or every request with
``fast_path=False``) goes through its ``dispatch_to_response`` pipeline, whose answers the fast
path reproduces exactly. We do not let it call handlers: it defers to us (its sync dispatch cannot
await under trio), and we serialize results ourselves so an unserializable result is an error
answer rather than an exception out of the dispatcher.

It is imported by the first request that needs its pipeline, not before: with jsonschema and
asyncio it weighs ~6.6 MiB and ~0.1 s, and requests to existing methods with params that bind
never need it (specs/performance.md, "Memory"). Its results and ``JsonRpcError`` can only be met
once a handler's module has imported it, so they are recognised through ``sys.modules``.
"""

from __future__ import annotations

import functools
import inspect
import logging
import secrets
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from .._errors import ERROR_MESSAGES, ErrorCode, RpcError
from .._response import OK, Response
from .._wire.messages import NO_DATA, Answer, ErrorAnswer, Request, error_answer, result_answer
from .access import Access
from .methods import Methods, MethodSpec, RunMode
from .throttle import Throttle, short

__all__ = ["Dispatcher", "Invocation"]

log = logging.getLogger("jrpc_unix.dispatch")


@dataclass(slots=True)
class Invocation:
    """A request resolved to a handler and its arguments, ready to run."""

    spec: MethodSpec
    request: Request
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def _identity(x: Any) -> Any:
    return x


@functools.cache
def _pipeline() -> Any:
    """jsonrpcserver's ``dispatch_to_response_pure``, imported on first use."""
    with warnings.catch_warnings():  # jsonrpcserver 5 uses a deprecated importlib API at import
        warnings.simplefilter("ignore", DeprecationWarning)
        from jsonrpcserver.dispatcher import dispatch_to_response_pure
    return dispatch_to_response_pure


def _data(value: Any) -> Any:
    """A jsonrpcserver error's ``data``, its "none" sentinel made ours."""
    sentinels = sys.modules.get("jsonrpcserver.sentinels")
    return NO_DATA if sentinels is not None and value is sentinels.NODATA else value


def _slotted(spec: MethodSpec) -> inspect.Signature:
    """The handler's signature behind one leading slot for jsonrpcserver's ``context``: what
    its parameter check binds the params against (``validate_args``)."""
    slot = inspect.Parameter("_jrpc_sink", inspect.Parameter.POSITIONAL_ONLY)
    return spec.signature.replace(parameters=[slot, *spec.signature.parameters.values()])


def _deferring(spec: MethodSpec) -> Callable[..., Any]:
    """A stand-in for jsonrpcserver to call: records the Invocation instead of running the handler.

    Its signature is :func:`_slotted`'s (the record goes in the slot), so jsonrpcserver's own
    parameter check decides as it would.
    """

    def stand_in(sink: list[Invocation], /, *args: Any, **kwargs: Any) -> Any:
        sink.append(Invocation(spec, None, args, kwargs))  # type: ignore[arg-type]  # request: see _reference
        return sys.modules["jsonrpcserver"].Success(None)  # (it is calling us: it is loaded)

    stand_in.__signature__ = _slotted(spec)  # type: ignore[attr-defined]
    return stand_in


_PLAIN = frozenset((str, int, float, bool, type(None), list, dict))


class Dispatcher:
    """Resolves requests against ``methods`` and the server's own ``rpc.*`` extensions."""

    def __init__(
        self,
        methods: Methods,
        *,
        extensions: dict[str, MethodSpec] | None = None,
        fast_path: bool = True,
    ) -> None:
        self.methods = methods
        self.fast_path = fast_path
        self._specs: dict[str, MethodSpec] = {s.name: s for s in methods.specs()}
        # The server's own rpc.* methods check their params themselves, access first (a topic's
        # level before its params): the generic type check is for the service's methods.
        self._specs.update({n: replace(s, types=None) for n, s in (extensions or {}).items()})
        self._stand_ins: dict[str, Callable[..., Any]] | None = None  # made for the first _reference
        self._signatures: dict[str, inspect.Signature] = {}  # _slotted(spec) by name, as needed
        #: Methods that run at once, outside the connection's order (rpc.cancel).
        self.immediate = frozenset(name for name, spec in self._specs.items() if spec.immediate)
        #: Methods whose calls survive the caller's disconnect.
        self.run_to_completion = frozenset(n for n, spec in self._specs.items() if spec.run_to_completion)
        self._fast_specs: dict[Access, dict[str, MethodSpec]] = {}
        self._fallback = MethodSpec.build("*", methods.handler) if methods.handler is not None else None
        self._throttled_log = Throttle(log)  # log lines any client can cause
        self._tracebacks = Throttle(log, period=60, burst=1, summarise=False)  # per (method, type)

    def prepare(self, req: Request) -> Invocation | ErrorAnswer:
        """The Invocation to run, or the error answer (no such method, params that do not bind).

        Decided here as jsonrpcserver's pipeline would (``fast_path=False`` asks it; the test
        suite holds the two equal): a method it does not have is -32601; params are bound
        against the handler's signature, -32602 with the binding's complaint if they do not.
        """
        spec = self._specs.get(req.method)
        if spec is None and self._fallback is not None and not req.method.startswith("rpc."):
            return Invocation(self._fallback, req, (req.method, req.params), {})
        if not self.fast_path:
            call = self._reference(req)
        elif spec is None:
            data = self._did_you_mean(req.method, req.method)
            return self._error(
                req.method, req.id, req.is_notification, ErrorCode.METHOD_NOT_FOUND, None, data
            )
        elif (args := spec.bind(req.params)) is not None:  # (the fast path's own check)
            if type(args) is dict:
                return Invocation(spec, req, (), args)
            return Invocation(spec, req, tuple(args), {})
        else:  # params that do not bind, or of the wrong types (the check below says which)
            call = self._bind(spec, req)
        if isinstance(call, Invocation) and call.spec.types is not None:
            problem = call.spec.types.problem(call.kwargs or call.args)
            if problem is not None:
                return self.invalid_types(req, problem)
        return call

    def _bind(self, spec: MethodSpec, req: Request) -> Invocation | ErrorAnswer:
        """Params ``MethodSpec.bind`` refused, bound as jsonrpcserver's ``validate_args`` binds
        them: a list by position, a dict by name, behind the slot of its ``context``."""
        params = req.params
        args = tuple(params) if isinstance(params, list) else ()
        kwargs = params if isinstance(params, dict) else {}
        signature = self._signatures.get(spec.name)
        if signature is None:
            signature = self._signatures[spec.name] = _slotted(spec)
        try:
            signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            return self._error(
                req.method, req.id, req.is_notification, ErrorCode.INVALID_PARAMS, None, str(exc)
            )
        return Invocation(spec, req, args, kwargs)

    def invalid_types(self, req: Request, problem: str) -> ErrorAnswer:
        """-32602 for params that bind but have the wrong types; ``data`` says which and why."""
        return self._error(req.method, req.id, req.is_notification, ErrorCode.INVALID_PARAMS, None, problem)

    def fast_specs(self, level: Access) -> dict[str, MethodSpec]:
        """The methods a caller at ``level`` may have answered inline by the server's fast path:
        quick synchronous handlers it is allowed to call (none with ``fast_path=False``)."""
        found = self._fast_specs.get(level)
        if found is None:  # one dict per level, shared by every connection at that level
            found = self._fast_specs[level] = {
                name: spec
                for name, spec in self._specs.items()
                if self.fast_path
                and spec.mode is RunMode.SYNC
                and not spec.immediate
                and spec.access <= level
            }
        return found

    def access_needed(self, name: str) -> Access | None:
        """The level a call of ``name`` needs, or None for a name nothing serves."""
        spec = self._specs.get(name)
        if spec is None and self._fallback is not None and not name.startswith("rpc."):
            spec = self._fallback
        return None if spec is None else spec.access

    def spec(self, name: str) -> MethodSpec | None:
        """The registered method or ``rpc.*`` extension called ``name``, or None."""
        return self._specs.get(name)

    def specs(self) -> list[MethodSpec]:
        """Every registered method and ``rpc.*`` extension."""
        return list(self._specs.values())

    def knows(self, name: str) -> bool:
        """Is ``name`` a registered method (not the seed-style fallback)?"""
        return name in self._specs

    def _reference(self, req: Request) -> Invocation | ErrorAnswer:
        """Resolve through jsonrpcserver's own pipeline."""
        # Always as a call (a notification with id null): jsonrpcserver answers nothing to a
        # notification, and we want its error to log it. Deferred calls keep our own request.
        obj: dict[str, Any] = {"jsonrpc": "2.0", "method": req.method, "id": req.id}
        if req.params is not None:
            obj["params"] = req.params
        sink: list[Invocation] = []
        if self._stand_ins is None:
            self._stand_ins = {name: _deferring(spec) for name, spec in self._specs.items()}
        response = _pipeline()(
            deserializer=_identity,
            validator=_identity,
            methods=self._stand_ins,
            context=sink,
            post_process=_identity,
            request=obj,
        )
        if sink:
            call = sink[0]
            call.request = req
            return call
        # oslash privates (here and in answer()): jsonrpcserver 5's results are oslash Either
        # values with no public accessor; the <6 pin in pyproject.toml holds this coupling.
        error = response._error  # a Left(ErrorResponse): nothing deferred
        data = _data(error.data)
        if error.code == ErrorCode.METHOD_NOT_FOUND:
            data = self._did_you_mean(req.method, data)
        return self._error(req.method, req.id, req.is_notification, error.code, error.message, data)

    def _did_you_mean(self, name: str, data: Any) -> Any:
        """-32601's ``data``: the name, as jsonrpcserver says; or, when some known names are
        close to it, ``{"method": name, "did_you_mean": [up to 3 names, closest first]}``.

        Only where the API is public (``rpc.discover`` served, which lists every name anyway):
        a server that hides its API does not spell it out to whoever guesses near it.
        """
        if "rpc.discover" not in self._specs or len(name) > 200:  # difflib is quadratic
            return data
        import difflib  # only a typo pays for it

        close = difflib.get_close_matches(name, self._specs, n=3, cutoff=0.6)
        return {"method": name, "did_you_mean": close} if close else data

    def answer(self, method: str, rid: Any, notification: bool, value: Any) -> Answer:
        """The outcome of a handler that returned ``value`` (a FAIL Response is an error).

        Given the request's fields, not an Invocation: the server's fast path makes none.
        """
        if type(value) in _PLAIN:
            return None if notification else result_answer(rid, value)
        if type(value) is Response:
            if value.status is OK:
                return None if notification else result_answer(rid, value.payload)
            data = NO_DATA if value.payload is None else value.payload
            return self._error(method, rid, notification, value.code, value.error or "failed", data)
        if (result := sys.modules.get("jsonrpcserver.result")) is not None:  # (oslash Either values)
            if isinstance(value, result.Right) and isinstance(value._value, result.SuccessResult):
                value = value._value.result
            elif isinstance(value, result.Left) and isinstance(value._error, result.ErrorResult):
                err = value._error
                return self._error(method, rid, notification, err.code, err.message, _data(err.data))
        return None if notification else result_answer(rid, value)

    def answer_exception(self, method: str, rid: Any, notification: bool, exc: Exception) -> ErrorAnswer:
        """The outcome of a handler that raised: its own error, or -32603 with no traceback."""
        if isinstance(exc, RpcError):
            data = NO_DATA if exc.data is None else exc.data
            return self._error(method, rid, notification, exc.code, exc.message, data)
        exceptions = sys.modules.get("jsonrpcserver.exceptions")
        if exceptions is not None and isinstance(exc, exceptions.JsonRpcError):
            return self._error(method, rid, notification, exc.code, exc.message, _data(exc.data))
        error_id = secrets.token_hex(4)
        self._log_crash(method if method in self._specs else "*", method, exc, error_id)
        return self._error(method, rid, notification, ErrorCode.INTERNAL_ERROR, None, {"error_id": error_id})

    def _log_crash(self, key: str, method: str, exc: Exception, error_id: str) -> None:
        """One line per crash with its error id, up to 20 per 10 s per method; the traceback only
        for the first crash of each (method, exception type) in a minute: a client can make a
        handler fail on every request, and each traceback is ~10x the request that caused it."""
        if not self._throttled_log.allow(f"crash {key}"):
            return
        if self._tracebacks.allow(f"{key} {type(exc).__qualname__}"):
            log.error("method %s raised; error id %s", short(method), error_id, exc_info=exc)
        else:
            what = f"{type(exc).__qualname__}: {short(str(exc))}"
            log.error("method %s raised %s; error id %s (traceback as before)", short(method), what, error_id)

    def _error(
        self, method: str, rid: Any, notification: bool, code: int, message: str | None, data: Any
    ) -> ErrorAnswer:
        """:func:`error_answer`, logging a notification's error: nobody else will see it."""
        if notification:
            text = message or ERROR_MESSAGES.get(code, "error")
            detail = "" if data is NO_DATA else f" {short(data)}"
            what = f"[{code}] {short(text)}{detail}"
            self._throttled_log.warning("notification", "notification %s failed: %s", short(method), what)
        return error_answer(rid, notification, code, message, data)
