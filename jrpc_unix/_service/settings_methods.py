"""The ``settings.*`` methods and the ``settings`` topic, mounted on a service's :class:`Methods`.

``describe``, ``get``, ``diff`` and ``log`` read (level ``read``, READ by default); ``set``,
``reset`` and ``revert`` change (level ``write``, OPERATE by default, and each setting may need
more). Secrets are redacted for callers below ADMIN; events always. The shapes are in
specs/settings.md.
"""

from __future__ import annotations

from typing import Any

from .._errors import ErrorCode, RpcError
from .access import Access
from .context import current_context
from .methods import Methods
from .settings import SettingsBase
from .settings_change import change, event

__all__ = ["Settings", "mount"]


class Settings(SettingsBase):
    """Declare a service's settings by subclassing this (see :func:`jrpc_unix.setting`)."""

    def mount(
        self,
        methods: Methods,
        prefix: str = "settings",
        *,
        read: Access = Access.READ,
        write: Access = Access.OPERATE,
    ) -> None:
        """Serve these settings on ``methods``: ``PREFIX.describe/get/set/reset/diff/log/revert``
        and the topic ``PREFIX`` (every applied change, at the ``read`` level)."""
        mount(self, methods, prefix, read=Access(read), write=Access(write))


def _level() -> Access:
    return current_context().connection.level


def _names(s: SettingsBase, names: list[str] | None) -> list[str]:
    if names is None:
        return list(s.fields)
    unknown = [{"name": n, "reason": "no such setting"} for n in names if n not in s.fields]
    if unknown:
        raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", unknown)
    return names


def mount(s: SettingsBase, methods: Methods, prefix: str, *, read: Access, write: Access) -> None:
    """Register the methods and the topic (see the module docstring)."""

    def describe() -> list[dict[str, Any]]:
        """Every setting: name, JSON Schema, default, value, description, access, flags."""
        level = _level()
        return [
            {
                "name": name,
                "schema": spec.schema(),
                "default": s.shown(name, spec.default, level),
                "value": s.shown(name, s.running[name], level),
                "description": spec.description,
                "access": max(spec.access, write).name.lower(),
                "restart_required": spec.restart_required,
                "secret": spec.secret,
            }
            for name, spec in s.fields.items()
        ]

    def get(names: list[str] | None = None) -> dict[str, Any]:
        """The running values of ``names`` (all when null): {name: value}."""
        level = _level()
        return {n: s.shown(n, s.running[n], level) for n in _names(s, names)}

    async def apply(values: dict[str, Any], method: str, **options: Any) -> dict[str, Any]:
        ctx = current_context()
        before = s.version
        result = await change(s, values, method=method, peer=ctx.peer, level=ctx.connection.level, **options)
        if s.version != before:
            ctx.server.publish(prefix, event(s, s.history[-1]))
        return result

    async def set_(
        values: dict[str, Any],
        dry_run: bool = False,
        persist: bool = False,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Change one or more settings, all or nothing: {version, changes, applied, persisted}."""
        return await apply(
            values, f"{prefix}.set", dry_run=dry_run, persist=persist, expected_version=expected_version
        )

    async def reset(names: list[str] | None = None, persist: bool = False) -> dict[str, Any]:
        """Put ``names`` (all when null) back to their defaults, as one change."""
        defaults = {n: s.fields[n].default for n in _names(s, names)}
        return await apply(defaults, f"{prefix}.reset", persist=persist)

    def diff() -> list[dict[str, Any]]:
        """Each setting that differs from its default: default, persisted, running, source."""
        level = _level()
        out = []
        for name, spec in s.fields.items():
            running, pending = s.running[name], name in s.pending
            in_file = name in s.file_values
            if running == spec.default and not pending and not in_file:
                continue
            entry: dict[str, Any] = {
                "name": name,
                "default": s.shown(name, spec.default, level),
                "persisted": s.shown(name, s.file_values[name], level) if in_file else None,
                "running": s.shown(name, running, level),
                "source": s.source(name),
                "pending_restart": pending,
            }
            if pending:
                entry["pending"] = s.shown(name, s.pending[name], level)
            if name in s.file_skipped:
                entry["file_error"] = s.file_skipped[name]
            out.append(entry)
        for name, reason in s.file_skipped.items():
            if name not in s.fields:
                out.append({"name": name, "persisted": s.file_values[name], "file_error": reason})
        return out

    def log(limit: int = 20) -> list[dict[str, Any]]:
        """The newest ``limit`` changes, newest first: version, time, peer, method, changes."""
        if limit < 0:
            raise RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", "limit: must be >= 0")
        level = _level()
        entries = list(s.history)[::-1][:limit]
        return [
            {
                "version": e.version,
                "time": e.time,
                "peer": e.peer,
                "method": e.method,
                "changes": s.changes_shown(e.changes, level),
            }
            for e in entries
        ]

    async def revert(version: int, persist: bool = False) -> dict[str, Any]:
        """Apply the values as they were right after ``version``, as a new change."""
        if version == 0:
            after = s.initial
        else:
            found = [e for e in s.history if e.version == version]
            if not found:
                held = f"{s.history[0].version}..{s.history[-1].version}" if s.history else "none"
                raise RpcError(
                    ErrorCode.INVALID_PARAMS,
                    "Invalid params",
                    f"version: {version} is not in the history (held: 0 and {held})",
                )
            after = found[0].after
        return await apply(dict(after), f"{prefix}.revert", persist=persist)

    for name, func, access in (
        ("describe", describe, read),
        ("get", get, read),
        ("set", set_, write),
        ("reset", reset, write),
        ("diff", diff, read),
        ("log", log, read),
        ("revert", revert, write),
    ):
        methods.register(f"{prefix}.{name}", func, access=access, run_to_completion=name in _CHANGES)
    methods.add_topic(prefix, "every applied settings change: version, changes, peer", access=read)


_CHANGES = frozenset(("set", "reset", "revert"))
