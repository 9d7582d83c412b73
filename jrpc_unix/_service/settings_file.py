"""The settings file: a JSON object of the values that differ from their defaults.

JSON, not TOML: it is the protocol's own format, so a value in the file is exactly what
``settings.get`` shows and ``settings.set`` takes (no second type mapping), and the standard
library writes it (``tomllib`` only reads). Written atomically: a temporary file in the same
directory, fsync, rename over the old one, fsync the directory; a reader (or a restart after a
SIGKILL) sees the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["read_values", "write_values"]


def read_values(path: Path) -> dict[str, Any]:
    """The file's values; ``{}`` when it does not exist. Raises ValueError (not JSON) or
    TypeError (not an object)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError(f"{path}: a settings file holds a JSON object, not {type(data).__name__}")
    return data


def write_values(path: Path, values: dict[str, Any]) -> None:
    """Replace the file with ``values``, atomically and durably (see the module docstring)."""
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(values, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
