"""What each signal does to a server running in the foreground (:func:`jrpc_unix.run`)."""

from __future__ import annotations

import json
import logging
import signal
from collections.abc import AsyncIterator

from .._service.context import ServerHandle

__all__ = ["STATS_SIGNALS", "STOP_SIGNALS", "relay_signals"]

log = logging.getLogger("jrpc_unix.server")

#: run() stops gracefully on these and logs figures on those: left to their default action, each
#: would kill the process and leave its socket file (SIGHUP: terminal gone; SIGQUIT: Ctrl-\).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
STATS_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)  # one line: rpc.stats' "server" section


async def relay_signals(signals: AsyncIterator[int], server: ServerHandle) -> None:
    """Stop ``server`` gracefully on the first stop signal; log its figures on a stats signal.

    Signals keep being consumed until the server has stopped: a second one (an impatient
    operator, a supervisor repeating itself) must not kill the process in its grace period.
    """
    async for signum in signals:
        name = signal.Signals(signum).name
        if signum in STATS_SIGNALS:
            figures = json.dumps(server.stats.snapshot()["server"], separators=(",", ":"))
            log.info("%s received; figures: %s", name, figures)
        elif server.stopping:
            log.info("%s received; already stopping", name)
        else:
            log.info("%s received; stopping", name)
            server.stop()
