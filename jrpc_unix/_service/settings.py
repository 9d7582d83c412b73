"""Typed settings: declared with type hints, checked on the way in, changed all-or-nothing.

A service declares its settings as a class (specs/settings.md)::

    class MySettings(Settings):
        workers: int = setting(4, ge=1, le=64, description="worker threads")
        api_token: str = setting("", secret=True, access=Access.ADMIN)

An instance holds the live values (``s.workers``), the version, the history and the file;
:class:`~jrpc_unix._service.settings_methods.Settings` (the public class, this one's subclass)
adds ``mount``, which serves them as the ``settings.*`` methods. The change itself (validate
everything, run the hooks, restore on a failing hook, record, persist) is
:mod:`jrpc_unix._service.settings_change`.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .access import Access
from .discover import schema_of
from .settings_file import read_values
from .types import Check, compile_check

__all__ = ["REDACTED", "Entry", "Setting", "SettingsBase", "setting"]

log = logging.getLogger("jrpc_unix.settings")

#: What a caller below ADMIN sees instead of a secret's value (and every event and log line).
REDACTED = "<redacted>"

Hook = Callable[..., Any]


@dataclass(slots=True)
class Setting:
    """One declared setting (what :func:`setting` returns); a descriptor on its class."""

    default: Any
    description: str = ""
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    #: The level a caller needs to change it (reading needs the level of ``settings.get``).
    access: Access = Access.OPERATE
    secret: bool = False
    restart_required: bool = False
    #: ``hook(new_value)``, sync or async, run when the value changes (again with the old value
    #: when a later hook of the same change fails).
    on_change: Hook | None = None
    name: str = ""
    annotation: Any = None
    check: Check | None = field(default=None, repr=False)

    def __get__(self, obj: SettingsBase | None, owner: type | None = None) -> Any:
        return self if obj is None else obj.running[self.name]

    def reason(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this setting, or None."""
        return None if self.check is None else self.check.test(value)

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of its values, constraints included."""
        out = schema_of(self.annotation)
        for key, bound in (
            ("minimum", self.ge),
            ("maximum", self.le),
            ("minLength" if self.annotation is str else "minItems", self.min_length),
            ("maxLength" if self.annotation is str else "maxItems", self.max_length),
            ("pattern", self.pattern),
        ):
            if bound is not None:
                out[key] = bound
        return out


def setting(
    default: Any,
    *,
    description: str = "",
    ge: float | None = None,
    le: float | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    access: Access = Access.OPERATE,
    secret: bool = False,
    restart_required: bool = False,
    on_change: Hook | None = None,
) -> Any:
    """Declare a setting on a :class:`Settings` class (typed ``Any`` so ``x: int = setting(4)``
    type-checks). ``ge``/``le`` bound numbers, ``min_length``/``max_length`` strings and
    arrays, ``pattern`` strings (``re.fullmatch``)."""
    return Setting(
        default, description, ge, le, min_length, max_length, pattern, Access(access), secret,
        restart_required, on_change,
    )  # fmt: skip


@dataclass(slots=True)
class Entry:
    """One applied change, as the history keeps it (values unredacted; answers redact)."""

    version: int
    time: str
    peer: dict[str, int] | None
    method: str
    changes: list[dict[str, Any]]
    #: Every setting's target value right after this version (for ``revert``).
    after: dict[str, Any]


#: The instance attributes of a Settings object: no setting may be called so.
_RESERVED = frozenset({
    "running", "pending", "version", "history", "initial", "always_persist", "group_hooks",
    "file_values", "file_skipped", "busy", "file", "fields",
})  # fmt: skip


class SettingsBase:
    """The base class of a service's settings; see the module docstring and specs/settings.md.

    ``file``: where ``persist=true`` writes (loaded now, before any socket accepts; None: nothing
    is persisted). ``history``: how many changes ``settings.log`` and ``revert`` keep.
    ``always_persist``: every change is written, as if each asked ``persist=true``.
    """

    fields: typing.ClassVar[dict[str, Setting]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        hints = typing.get_type_hints(cls)
        cls.fields = {}
        for name, annotation in hints.items():
            if name.startswith("_") or typing.get_origin(annotation) is typing.ClassVar:
                continue
            ours = (k for k in cls.__mro__ if k.__module__.startswith("jrpc_unix._service"))
            if name in _RESERVED or any(name in vars(k) for k in ours):
                raise TypeError(f"setting {name!r}: the name is taken by the Settings class itself")
            declared = cls.__dict__.get(name, inspect.Parameter.empty)
            if declared is inspect.Parameter.empty:
                raise TypeError(f"setting {name!r} has no default")
            spec = declared if isinstance(declared, Setting) else Setting(declared)
            spec.name, spec.annotation = name, annotation
            spec.check = compile_check(
                annotation, ge=spec.ge, le=spec.le, min_length=spec.min_length,
                max_length=spec.max_length, pattern=spec.pattern,
            )  # fmt: skip
            problem = spec.reason(spec.default)
            if problem is not None:
                raise TypeError(f"setting {name!r}: its default {spec.default!r}: {problem}")
            cls.fields[name] = spec
            setattr(cls, name, spec)

    def __init__(
        self, *, file: str | Path | None = None, history: int = 100, always_persist: bool = False
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be at least 1, not {history!r}")
        #: The values in effect; a restart-required setting's new value waits in ``pending``.
        self.running: dict[str, Any] = {n: s.default for n, s in self.fields.items()}
        self.pending: dict[str, Any] = {}
        self.version = 0
        self.history: deque[Entry] = deque(maxlen=history)
        self.initial: dict[str, Any] = {}
        self.always_persist = always_persist
        self.group_hooks: list[tuple[frozenset[str], Hook]] = []
        #: What the file held when loaded or last written; and its entries that were skipped.
        self.file_values: dict[str, Any] = {}
        self.file_skipped: dict[str, str] = {}
        #: True while a change awaits its hooks: another writer is refused, never interleaved.
        self.busy = False
        self.file = None if file is None else Path(file)
        if self.file is not None:
            self.load(self.file)
        self.initial = self.targets()

    def on_change(self, *names: str) -> Callable[[Hook], Hook]:
        """Decorator: a group hook, ``hook({name: new_value})`` once per change touching ``names``."""
        unknown = [n for n in names if n not in self.fields]
        if unknown or not names:
            raise ValueError(f"on_change: unknown settings {unknown!r}" if unknown else "on_change: no names")

        def register(hook: Hook) -> Hook:
            self.group_hooks.append((frozenset(names), hook))
            return hook

        return register

    def load(self, path: str | Path) -> None:
        """Use ``path`` as the settings file and apply what it holds (sync hooks run).

        An entry that does not validate (or names no setting) is skipped with a log line and
        shown by ``settings.diff``; an unreadable file is logged and ignored: never fatal.
        """
        self.file = Path(path)
        try:
            stored = read_values(self.file)
        except (OSError, ValueError, TypeError) as exc:
            log.error(  # noqa: TRY400 - the reason is the message; a traceback would add nothing
                "settings file %s ignored: %s", self.file, exc
            )
            stored = {}
        self.file_values, self.file_skipped = dict(stored), {}
        for name, value in stored.items():
            spec = self.fields.get(name)
            reason = "no such setting" if spec is None else spec.reason(value)
            if reason is not None:
                self.file_skipped[name] = reason
                log.warning("settings file %s: %s skipped: %s", self.file, name, reason)
                continue
            assert spec is not None
            if value != self.running[name]:
                self.running[name] = value
                if spec.on_change is not None and not inspect.iscoroutinefunction(spec.on_change):
                    spec.on_change(value)
        self.initial = self.targets()

    def targets(self) -> dict[str, Any]:
        """Each setting's value once pending restarts are done: what a change compares with."""
        return {**self.running, **self.pending}

    def shown(self, name: str, value: Any, level: Access) -> Any:
        """``value`` as a caller at ``level`` may see it."""
        return REDACTED if self.fields[name].secret and level < Access.ADMIN else value

    def changes_shown(self, changes: list[dict[str, Any]], level: Access) -> list[dict[str, Any]]:
        return [
            {
                "name": c["name"],
                "old": self.shown(c["name"], c["old"], level),
                "new": self.shown(c["name"], c["new"], level),
            }
            for c in changes
        ]

    def source(self, name: str) -> str:
        """Where the running value comes from: ``default``, ``file`` or ``runtime``."""
        value = self.running[name]
        if name in self.file_values and name not in self.file_skipped and self.file_values[name] == value:
            return "file"
        return "default" if value == self.fields[name].default else "runtime"
