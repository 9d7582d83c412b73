"""Tell systemd how the service is doing (sd_notify(3)), for ``Type=notify`` units.

When ``NOTIFY_SOCKET`` is set, the server sends ``READY=1`` once it listens, ``STOPPING=1``
when a graceful stop begins, and ``STATUS=`` lines systemctl shows. One datagram each, never
waiting: a notification that cannot be sent is dropped (systemd's own sd_notify does the same).
"""

from __future__ import annotations

import contextlib
import os
import socket as stdsocket

__all__ = ["sd_notify"]


def sd_notify(*lines: str) -> bool:
    """Send ``lines`` (``"READY=1"``, ``"STATUS=..."``) to ``$NOTIFY_SOCKET``; False if unset or
    unsent. A leading ``@`` names an abstract address, as in systemd."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or address[0] not in "/@":  # (vsock addresses are not for us)
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    payload = "\n".join(line.replace("\n", " ") for line in lines).encode()
    with stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_DGRAM | stdsocket.SOCK_CLOEXEC) as sock:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.sendto(payload, target)
            return True
    return False
