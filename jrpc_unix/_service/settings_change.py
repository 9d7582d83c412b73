"""One settings change, all or nothing: the heart of ``settings.set``, ``reset`` and ``revert``.

In order, and nothing happens before every check passed:

1. every value is validated (all reasons at once: -32602, data ``[{"name", "reason"}]``);
2. the caller's level must allow each setting it would change (-32003);
3. ``expected_version``, when given, must be the current version (-32010, data the current one);
4. a dry run stops here and answers the would-be changes: no hook, event, version, file, log;
5. the values are assigned and the hooks run (per setting, then per group); when one raises, the
   values already changed are restored, their hooks called again with the old values, and the
   caller gets -32011 naming the setting (or group) and the reason;
6. the version goes up, the change is logged (history) and published; with ``persist`` the
   file is rewritten with this call's settings (and what it held), values equal to their
   defaults left out.

Runs on the event loop: synchronous hooks make it atomic; while an async hook is awaited, a second
writer is refused with -32012 rather than interleaved.
"""

from __future__ import annotations

import inspect
import logging
from datetime import UTC, datetime
from typing import Any

from .._errors import ErrorCode, RpcError
from .access import Access, Peer
from .settings import Entry, SettingsBase
from .settings_file import write_values

__all__ = ["change", "event"]

log = logging.getLogger("jrpc_unix.settings")


def _invalid(problems: list[dict[str, str]]) -> RpcError:
    return RpcError(ErrorCode.INVALID_PARAMS, "Invalid params", problems)


def _validate(s: SettingsBase, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict) or not values:
        raise _invalid([{"name": "values", "reason": "expected an object of one or more settings"}])
    problems = []
    for name, value in values.items():
        spec = s.fields.get(name)
        reason = "no such setting" if spec is None else spec.reason(value)
        if reason is not None:
            problems.append({"name": name, "reason": reason})
    if problems:
        raise _invalid(problems)
    return values


async def _call(hook: Any, arg: Any) -> None:
    result = hook(arg)
    if inspect.isawaitable(result):
        await result


async def _apply(s: SettingsBase, changes: list[dict[str, Any]]) -> None:
    """Assign and run the hooks; on a failing hook restore everything and raise -32011."""
    now = [c for c in changes if not s.fields[c["name"]].restart_required]
    saved_pending = dict(s.pending)
    for c in changes:
        if s.fields[c["name"]].restart_required:
            s.pending[c["name"]] = c["new"]
    done: list[tuple[Any, Any]] = []  # (hook, the argument that undoes it)
    what = ""
    try:
        for c in now:
            s.running[c["name"]] = c["new"]
        for c in now:
            hook = s.fields[c["name"]].on_change
            if hook is not None:
                what = c["name"]
                await _call(hook, c["new"])
                done.append((hook, c["old"]))
        touched = {c["name"] for c in now}
        for names, hook in s.group_hooks:
            if names & touched:
                what = ",".join(sorted(names))
                await _call(hook, {n: s.running[n] for n in sorted(names)})
                done.append(
                    (hook, {n: s.running[n] if n not in touched else _old(now, n) for n in sorted(names)})
                )
    except BaseException as exc:
        s.pending = saved_pending
        for c in now:
            s.running[c["name"]] = c["old"]
        if not isinstance(exc, Exception):  # cancelled (the handler's timeout): values restored,
            raise  # but an await now would be cancelled too, so the hooks are not run again
        for hook, old in reversed(done):
            try:
                await _call(hook, old)
            except Exception:
                log.exception("settings hook failed again while restoring %s", what)
        log.warning("settings change undone: the hook of %s raised %r", what, exc)
        raise RpcError(
            ErrorCode.SETTINGS_HOOK_FAILED,
            "Settings hook failed",
            {"name": what, "reason": str(exc) or repr(exc)},
        ) from None


def _old(changes: list[dict[str, Any]], name: str) -> Any:
    return next(c["old"] for c in changes if c["name"] == name)


async def change(
    s: SettingsBase,
    values: Any,
    *,
    method: str,
    peer: Peer | None,
    level: Access,
    dry_run: bool = False,
    persist: bool = False,
    expected_version: int | None = None,
) -> dict[str, Any]:
    """Validate, check, apply, record: see the module docstring. The ``settings.set`` answer."""
    if s.busy:
        raise RpcError(ErrorCode.SETTINGS_BUSY, "Settings change in progress", {"version": s.version})
    values = _validate(s, values)
    denied = [n for n in values if s.fields[n].access > level]
    targets = s.targets()
    changes = [{"name": n, "old": targets[n], "new": v} for n, v in values.items() if targets[n] != v]
    denied = [n for n in denied if any(c["name"] == n for c in changes)]
    if denied:
        needed = max(s.fields[n].access for n in denied).name.lower()
        raise RpcError(
            ErrorCode.ACCESS_DENIED,
            "Access denied",
            f"changing {', '.join(denied)} needs {needed} access; you have {level.name.lower()}",
        )
    if expected_version is not None and expected_version != s.version:
        raise RpcError(
            ErrorCode.SETTINGS_VERSION_CONFLICT, "Settings version conflict", {"version": s.version}
        )
    shown = s.changes_shown(changes, level)
    if dry_run:
        return {"version": s.version, "changes": shown, "applied": False, "persisted": False}
    s.busy = True
    try:
        await _apply(s, changes)
    finally:
        s.busy = False
    if changes:
        s.version += 1
        who = None if peer is None else {"uid": peer.uid, "gid": peer.gid, "pid": peer.pid}
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
        s.history.append(Entry(s.version, stamp, who, method, changes, s.targets()))
        log.info(
            "settings version %d by %s (%s): %s",
            s.version, who, method, s.changes_shown(changes, Access.READ),
        )  # fmt: skip
    persisted = False
    if s.file is not None and (persist or s.always_persist):
        targets = s.targets()
        stored = {n: v for n, v in s.file_values.items() if n in s.fields and n not in s.file_skipped}
        stored.update((n, targets[n]) for n in values)  # this change's settings, and no others
        stored = {n: v for n, v in stored.items() if v != s.fields[n].default}
        try:
            write_values(s.file, stored)
        except OSError as exc:  # the change is made; say it is not persisted, and why in the log
            log.error(  # noqa: TRY400 - the reason is the message; a traceback would add nothing
                "settings file %s not written: %s", s.file, exc
            )
        else:
            s.file_values, s.file_skipped, persisted = stored, {}, True
    applied = not any(s.fields[c["name"]].restart_required for c in changes)
    return {"version": s.version, "changes": shown, "applied": applied, "persisted": persisted}


def event(s: SettingsBase, entry: Entry) -> dict[str, Any]:
    """The ``settings`` topic's event of a change: secrets always redacted (subscribers are at
    the read level; a secret is shown only to ADMIN callers who ask)."""
    return {
        "version": entry.version,
        "changes": s.changes_shown(entry.changes, Access.READ),
        "peer": entry.peer,
    }
