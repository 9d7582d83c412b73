"""What the command line prints: JSON results, error lines, and ``jrpc-unix methods``' text.

Works on any OpenRPC document (a jrpc-unix server's or another's), so it trusts nothing: every
member may be missing.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ._codec import dumps
from ._errors import RpcError

__all__ = [
    "pretty",
    "print_json",
    "print_line",
    "print_rpc_error",
    "render_method",
    "render_methods",
    "signature",
    "type_name",
]


def type_name(schema: Any) -> str:
    """A short type for a JSON Schema: ``string``, ``array<number>``, ``string | null``, ``any``."""
    if not isinstance(schema, dict) or not schema:
        return "any"
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"]) or "never"
    if "anyOf" in schema:
        return " | ".join(type_name(s) for s in schema["anyOf"])
    kind = schema.get("type")
    if kind == "array":
        if "prefixItems" in schema:
            return "[" + ", ".join(type_name(s) for s in schema["prefixItems"]) + "]"
        items = schema.get("items")
        return f"array<{type_name(items)}>" if isinstance(items, dict) and items else "array"
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"object<{type_name(extra)}>" if isinstance(extra, dict) and extra else "object"
    if isinstance(kind, str):
        return kind
    return str(schema.get("x-python-type", "any"))


def _param(p: dict[str, Any]) -> str:
    name = str(p.get("name", "?"))
    variadic = p.get("x-variadic")
    if variadic == "positional":
        name = "*" + name
    elif variadic == "named":
        name = "**" + name
    elif not p.get("required", False):
        name += "?"
    text = f"{name}: {type_name(p.get('schema'))}"
    schema = p.get("schema")
    if isinstance(schema, dict) and "default" in schema:
        text += f" = {json.dumps(schema['default'])}"
    return text


def _plain(text: str) -> str:
    """Docstring markup a terminal does not need: ``code`` -> `code`."""
    return text.replace("``", "`")


def signature(method: dict[str, Any]) -> str:
    """``name(a: integer, b?: string = "x") -> number``"""
    params = ", ".join(_param(p) for p in method.get("params", []) if isinstance(p, dict))
    result = method.get("result")
    returns = type_name(result.get("schema")) if isinstance(result, dict) else "any"
    return f"{method.get('name', '?')}({params}) -> {returns}"


def render_methods(methods: list[dict[str, Any]]) -> str:
    """One line per method: its signature, then its summary."""
    rows = [(signature(m), _plain(str(m.get("summary", "")))) for m in methods if isinstance(m, dict)]
    if not rows:
        return "(no methods)"
    width = min(max(len(sig) for sig, _ in rows), 60)
    lines = []
    for sig, summary in rows:
        if summary and len(sig) > width:
            lines.append(f"{sig}\n{'':{width}}  {summary}")
        else:
            lines.append(f"{sig:{width}}  {summary}".rstrip())
    return "\n".join(lines)


_STRUCTURE = {"by-name": "by name", "by-position": "by position", "either": "by name or by position"}


def render_method(method: dict[str, Any]) -> str:
    """Everything the document says about one method."""
    out = [signature(method)]
    text = _plain(str(method.get("description") or method.get("summary") or ""))
    if text:
        out += ["", *("  " + line if line else "" for line in text.splitlines())]
    params = [p for p in method.get("params", []) if isinstance(p, dict)]
    structure = _STRUCTURE.get(str(method.get("paramStructure", "either")), "by name or by position")
    out += ["", f"params ({structure}):" if params else "params: none"]
    for p in params:
        kind = {"positional": "any number, positional", "named": "any names"}.get(
            str(p.get("x-variadic")), "required" if p.get("required") else "optional"
        )
        out.append(f"  {p.get('name', '?')}: {type_name(p.get('schema'))}  ({kind})")
    result = method.get("result")
    out.append(f"result: {type_name(result.get('schema')) if isinstance(result, dict) else 'any'}")
    for key, label in (("x-access", "access"), ("x-timeout", "timeout (s)")):
        if key in method:
            out.append(f"{label}: {method[key]}")
    return "\n".join(out)


# -- output ------------------------------------------------------------------------------


def pretty(flag: bool | None) -> bool:
    return sys.stdout.isatty() if flag is None else flag


def print_json(value: Any, pretty: bool) -> None:
    if pretty:
        print(json.dumps(value, indent=2, ensure_ascii=False))
    else:
        print_line(dumps(value))


def print_line(line: bytes) -> None:
    """One line of UTF-8 JSON as bytes (whatever the locale's encoding), flushed."""
    sys.stdout.flush()
    sys.stdout.buffer.write(line + b"\n")
    sys.stdout.buffer.flush()


def print_rpc_error(exc: RpcError, prefix: str = "") -> None:
    """``error [code] message`` and, when there is data, ``  data: <JSON>`` on stderr."""
    print(f"{prefix}error [{exc.code}] {exc.message}", file=sys.stderr)
    if exc.data is not None:
        print(f"  data: {dumps(exc.data).decode()}", file=sys.stderr)
