"""The listening socket systemd passed (socket activation): ``systemd`` or ``systemd:NAME``.

systemd hands a service its sockets as descriptors from 3 on, named in ``LISTEN_FDNAMES``, for
the process whose pid is ``LISTEN_PID`` (sd_listen_fds(3)).
"""

from __future__ import annotations

import os
import socket as stdsocket

from .._errors import ServerSetupError

__all__ = ["systemd_socket"]

_SD_LISTEN_FDS_START = 3


def systemd_socket(address: str) -> stdsocket.socket:
    """Take the listening socket systemd passed, by name (``systemd:NAME``) or the only one."""
    wanted = address.partition(":")[2] or None
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        raise ServerSetupError("no socket from systemd: LISTEN_PID is not this process")
    count = int(os.environ.get("LISTEN_FDS", "0") or "0")
    names = os.environ.get("LISTEN_FDNAMES", "").split(":")
    fds = list(range(_SD_LISTEN_FDS_START, _SD_LISTEN_FDS_START + count))
    if wanted is not None:
        fds = [fd for i, fd in enumerate(fds) if i < len(names) and names[i] == wanted]
    if len(fds) != 1:
        which = f"named {wanted!r}" if wanted else "(pass systemd:NAME to choose)"
        raise ServerSetupError(f"systemd passed {count} socket(s); need exactly one {which}")
    for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):  # not for our children
        os.environ.pop(var, None)
    sock = stdsocket.socket(fileno=fds[0])
    if sock.family != stdsocket.AF_UNIX or not sock.getsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_ACCEPTCONN):
        sock.detach()
        raise ServerSetupError(f"fd {fds[0]} from systemd is not a listening UNIX socket")
    return sock
