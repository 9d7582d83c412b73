"""Text for a person at a terminal: ``jrpc-unix methods``' signatures and ``jrpc-unix stats``' table.

Works on any OpenRPC document or stats object (a jrpc-unix server's or another's), so it trusts
nothing: every member may be missing or of another type, and every string the server chose goes
through :func:`~.render.visible` (a name with a newline or an escape sequence cannot break
the layout or drive the terminal; the caller escapes the whole text once more, newlines aside).
"""

from __future__ import annotations

import json
from typing import Any

from .render import visible

__all__ = ["render_method", "render_methods", "render_stats", "signature", "type_name"]


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
        return visible(kind)
    return visible(str(schema.get("x-python-type", "any")))


def _param(p: dict[str, Any]) -> str:
    name = visible(str(p.get("name", "?")))
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
    return f"{visible(str(method.get('name', '?')))}({params}) -> {returns}"


def render_methods(methods: list[dict[str, Any]]) -> str:
    """One line per method: its signature, then its summary."""
    found = [m for m in methods if isinstance(m, dict)]
    rows = [(signature(m), visible(_plain(str(m.get("summary", ""))))) for m in found]
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
        out += ["", *("  " + visible(line) if line else "" for line in text.splitlines())]
    params = [p for p in method.get("params", []) if isinstance(p, dict)]
    structure = _STRUCTURE.get(str(method.get("paramStructure", "either")), "by name or by position")
    out += ["", f"params ({structure}):" if params else "params: none"]
    for p in params:
        kind = {"positional": "any number, positional", "named": "any names"}.get(
            str(p.get("x-variadic")), "required" if p.get("required") else "optional"
        )
        out.append(f"  {visible(str(p.get('name', '?')))}: {type_name(p.get('schema'))}  ({kind})")
    result = method.get("result")
    out.append(f"result: {type_name(result.get('schema')) if isinstance(result, dict) else 'any'}")
    for key, label in (("x-access", "access"), ("x-timeout", "timeout (s)")):
        if key in method:
            out.append(f"{label}: {visible(str(method[key]))}")
    return "\n".join(out)


# -- jrpc-unix stats -----------------------------------------------------------------------------


def _count(value: Any) -> str:
    """``1,234`` for a number, the JSON text for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def _duration(seconds: Any) -> str:
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        return _count(seconds)
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if not (days or hours or minutes):
        return f"{seconds:.1f} s"
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min", f"{secs} s"]
    return " ".join(p for p in parts if p)


def _reasons(counts: Any) -> str:
    """``parse_error 2, cancelled 1`` from a {reason: count} object; ``none`` when empty."""
    if not isinstance(counts, dict):
        return _count(counts)
    return ", ".join(f"{visible(k)} {_count(v)}" for k, v in counts.items()) or "none"


_SERVER_ROWS = {  # key in "server" -> its label; the order of the lines
    "uptime_s": "uptime",
    "connections": "connections",
    "calls": "calls",
    "notifications": "notifications",
    "errors": "errors",
    "in_flight": "in flight",
    "subscriptions": "subscriptions",
    "events_dropped": "events dropped",
    "rejected_requests": "rejected requests",
}


def _server_lines(server: dict[str, Any]) -> list[str]:
    rows: list[tuple[str, str]] = []
    for key in [*_SERVER_ROWS, *(k for k in server if k not in _SERVER_ROWS)]:
        if key not in server:
            continue
        value = server[key]
        if key == "uptime_s":
            text = _duration(value)
        elif key == "connections" and isinstance(value, dict):
            text = f"{_count(value.get('open'))} open, {_count(value.get('total'))} total"
            text += f", rejected: {_reasons(value.get('rejected', {}))}"
        elif key == "rejected_requests":
            text = _reasons(value)
        else:
            text = _count(value)
        rows.append((_SERVER_ROWS.get(key) or visible(key), text))
    return [f"{label:<18} {text}" for label, text in rows]


_METHOD_COLUMNS = ("calls", "notifs", "errors", "mean us", "p50 us", "p99 us")


def _cell(value: Any) -> str:
    return "-" if value is None else _count(value)


def _method_row(name: str, m: Any) -> list[str]:
    if not isinstance(m, dict):
        return [name, _count(m), "-", "-", "-", "-", "-"]
    latency = m.get("latency_us")
    lat = latency if isinstance(latency, dict) else {}
    cells = [m.get("calls"), m.get("notifications"), m.get("errors")]
    return [name, *map(_cell, cells), *(_cell(lat.get(k)) for k in ("mean", "p50", "p99"))]


def render_stats(figures: Any) -> str | None:
    """``rpc.stats`` as aligned text: server figures, one row per method, then the service's
    own sections as JSON. None when ``figures`` does not look like ``rpc.stats``."""
    server = figures.get("server") if isinstance(figures, dict) else None
    if not isinstance(server, dict):
        return None
    out = _server_lines(server)
    methods = figures.get("methods")
    if isinstance(methods, dict) and methods:
        rows = [["method", *_METHOD_COLUMNS]] + [_method_row(visible(n), m) for n, m in methods.items()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        out.append("")
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
            out.append("  ".join(cells).rstrip())
    extra = [(k, v) for k, v in figures.items() if k not in ("server", "methods")]
    if extra:
        out.append("")
        out.extend(f"{visible(name):<18} {json.dumps(value, ensure_ascii=False)}" for name, value in extra)
    return "\n".join(out)
