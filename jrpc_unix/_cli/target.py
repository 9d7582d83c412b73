"""Which socket a client command talks to: its SOCK argument, else ``$JRPC_UNIX_SOCKET``.

Like ``DOCKER_HOST``: a script or a shell session names its service once, then writes
``jrpc-unix call ping``. The first positional word is SOCK when it looks like an address (below);
otherwise, when ``JRPC_UNIX_SOCKET`` is set, the command takes its socket from there and the
word is the METHOD (or TOPIC). Without the variable nothing changes: the first word is SOCK.
Standard library only: the fast command line (:func:`~.main.quick_args`) uses it too.
"""

from __future__ import annotations

import os
import stat

__all__ = ["ENV", "default_target", "looks_like_address"]

#: The environment variable naming the default socket.
ENV = "JRPC_UNIX_SOCKET"


def default_target() -> str | None:
    """``$JRPC_UNIX_SOCKET``, or None when unset or empty."""
    return os.environ.get(ENV) or None


def looks_like_address(word: str) -> bool:
    """Whether ``word`` names a socket rather than a method: it has a ``/``, starts with ``@``,
    is ``systemd[:NAME]``, has a ``scheme://``, ends in ``.sock``/``.socket``, or is an
    existing socket file. An empty word counts (so it is reported as a bad SOCK)."""
    if not word or "/" in word or word.startswith("@") or word.endswith((".sock", ".socket")):
        return True
    if word == "systemd" or word.startswith("systemd:"):
        return True
    try:
        return stat.S_ISSOCK(os.stat(word).st_mode)
    except (OSError, ValueError):
        return False
