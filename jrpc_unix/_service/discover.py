"""``rpc.discover``: the service describes itself as an OpenRPC 1.2.6 document.

Everything comes from what is registered, so it cannot drift from the code: method names,
parameter names and kinds, JSON Schemas from the annotations, required or optional, docstring
summaries, the access level each method needs, and the error codes the service can answer.
``jrpc-unix methods SOCK`` renders it. A service that wants to hide its API turns it off with
``Server(discover=False)`` (then ``rpc.discover`` is an unknown method).

Python signatures say more than OpenRPC can: ``*args`` and ``**kwargs`` become one parameter
each, marked ``"x-variadic": "positional"`` / ``"named"``, and ``paramStructure`` says whether the
method takes params by position, by name, or either.
"""

from __future__ import annotations

import enum
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any

from .._errors import ERROR_MESSAGES, ErrorCode
from .._response import DEFAULT_FAIL_CODE, Response
from .._wire.fastjson import dumps
from .access import Access
from .methods import Methods, MethodSpec
from .types import hints_of

__all__ = ["add_discover", "openrpc_document", "schema_of"]

OPENRPC_VERSION = "1.2.6"
_P = inspect.Parameter
_SIMPLE: dict[Any, dict[str, Any]] = {
    str: {"type": "string"},
    int: {"type": "integer"},
    float: {"type": "number"},
    bool: {"type": "boolean"},
    type(None): {"type": "null"},
    None: {"type": "null"},
    list: {"type": "array"},
    tuple: {"type": "array"},
    dict: {"type": "object"},
}


def schema_of(annotation: Any) -> dict[str, Any]:
    """A JSON Schema for a (resolved) annotation; ``{}`` (anything) when it has no JSON form."""
    if annotation in (_P.empty, Any, object, Response):
        return {}
    if isinstance(annotation, str):  # an annotation that would not resolve
        return {"x-python-type": annotation}
    simple = _SIMPLE.get(annotation)
    if simple is not None:
        return dict(simple)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"enum": [m.value for m in annotation if _is_json(m.value)]}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [schema_of(a) for a in args]}
    if origin is typing.Literal:
        return {"enum": [a for a in args if _is_json(a)]}
    if origin in (list, set, frozenset) or _is_abc(origin, "Sequence", "Iterable", "Set"):
        return {"type": "array", "items": schema_of(args[0])} if args else {"type": "array"}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": schema_of(args[0])}
        return {"type": "array", "prefixItems": [schema_of(a) for a in args], "items": False}
    if origin is dict or _is_abc(origin, "Mapping", "MutableMapping"):
        if len(args) == 2:
            return {"type": "object", "additionalProperties": schema_of(args[1])}
        return {"type": "object"}
    if typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation)
        return {
            "type": "object",
            "properties": {k: schema_of(v) for k, v in hints.items()},
            "required": sorted(annotation.__required_keys__),
        }
    return {"x-python-type": getattr(annotation, "__qualname__", None) or repr(annotation)}


def _is_json(value: Any) -> bool:
    try:
        dumps(value)
    except ValueError:
        return False
    return True


def _is_abc(origin: Any, *names: str) -> bool:
    return getattr(origin, "__module__", "") == "collections.abc" and origin.__name__ in names


def _doc(func: Callable[..., Any]) -> tuple[str, str]:
    """(summary, description): the docstring's first paragraph, and the whole when longer."""
    doc = inspect.getdoc(func) or ""
    summary = " ".join(doc.split("\n\n", 1)[0].split())
    return summary, doc if doc.strip() != summary else ""


def _param(p: inspect.Parameter, hints: dict[str, Any]) -> dict[str, Any]:
    desc: dict[str, Any] = {"name": p.name, "schema": schema_of(hints.get(p.name, p.annotation))}
    if p.kind is _P.VAR_POSITIONAL:
        desc["x-variadic"] = "positional"
    elif p.kind is _P.VAR_KEYWORD:
        desc["x-variadic"] = "named"
    desc["required"] = p.default is _P.empty and p.kind not in (_P.VAR_POSITIONAL, _P.VAR_KEYWORD)
    if p.default is not _P.empty and _is_json(p.default):
        desc["schema"]["default"] = p.default
    return desc


def _structure(params: list[inspect.Parameter]) -> str:
    kinds = {p.kind for p in params}
    by_position = bool(kinds & {_P.POSITIONAL_ONLY, _P.VAR_POSITIONAL})
    by_name = bool(kinds & {_P.KEYWORD_ONLY, _P.VAR_KEYWORD})
    if by_position and not by_name:
        return "by-position"
    if by_name and not by_position:
        return "by-name"
    return "either"


def method_object(spec: MethodSpec) -> dict[str, Any]:
    """One OpenRPC method object."""
    hints = hints_of(spec.func)
    params = list(spec.signature.parameters.values())
    summary, description = _doc(spec.func)
    out: dict[str, Any] = {"name": spec.name}
    if summary:
        out["summary"] = summary
    if description:
        out["description"] = description
    out["params"] = [_param(p, hints) for p in params]
    out["paramStructure"] = _structure(params)
    returns = hints.get("return", spec.signature.return_annotation)
    out["result"] = {"name": "result", "schema": schema_of(returns)}
    out["x-access"] = Access(spec.access).name.lower()
    if spec.timeout is not None:
        out["x-timeout"] = spec.timeout
    return out


def _errors() -> dict[str, dict[str, Any]]:
    errors = {
        code.name: {"code": int(code), "message": ERROR_MESSAGES[code]}
        for code in ErrorCode
        if code is not ErrorCode.SERVER_ERROR  # jsonrpcserver's; this server never sends it
    }
    errors["APPLICATION_ERROR"] = {
        "code": DEFAULT_FAIL_CODE,
        "message": "the handler's own message (Response.fail); other codes outside -32768..-32000 too",
    }
    return errors


def openrpc_document(
    specs: list[MethodSpec], *, fallback: bool = False, title: str | None = None, version: str | None = None
) -> dict[str, Any]:
    """The OpenRPC document for ``specs``, in the order given; ``info`` names the service
    (the library's name and version when it has none)."""
    from .._version import __version__

    info: dict[str, Any] = {"title": title or "jrpc-unix service", "version": version or __version__}
    if fallback:
        info["description"] = "Method names not listed here go to a generic handler."
    return {
        "openrpc": OPENRPC_VERSION,
        "info": info,
        "methods": [method_object(s) for s in specs],
        "components": {"errors": _errors()},
    }


def add_discover(
    extensions: dict[str, MethodSpec], methods: Methods, title: str | None = None, version: str | None = None
) -> dict[str, MethodSpec]:
    """Add ``rpc.discover`` to a server's ``rpc.*`` extensions; its document covers both.

    The document is built on the first call and kept: a server's methods are fixed once it runs.
    """
    cache: list[dict[str, Any]] = []

    def discover() -> dict[str, Any]:
        """This service's OpenRPC document: its methods, their parameters and its error codes."""
        if not cache:
            specs = [*methods.specs(), *(s for s in extensions.values())]
            document = openrpc_document(
                specs, fallback=methods.handler is not None, title=title, version=version
            )
            cache.append(document)
        return cache[0]

    extensions["rpc.discover"] = MethodSpec.build("rpc.discover", discover, access=Access.READ)
    return extensions
