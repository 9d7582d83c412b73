"""The library's log records leave the event loop through a bounded queue: no handler can block it.

A log handler can block: stderr a pipe nobody drains, a full disk, a stalled syslog. Called on
the event loop, it would freeze every connection. While a server runs, each ``jrpc_unix.*``
logger has a filter that queues its records instead of handing them to handlers, and one
thread calls the handlers each record would have reached anyway (the logger's own, then its
ancestors' while they propagate; ``logging.lastResort`` when there are none). The application's
configuration, levels and handlers hold unchanged: only the thread that runs them differs.
When 1,000 records wait (the handlers are stuck), newer ones are dropped and counted; the
count is logged once the handlers move again. Handlers the application attached to a
``jrpc_unix.*`` logger created after the server started are called directly, as before.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading

__all__ = ["LOG_FORMAT", "default_logging", "start_log_thread", "stop_log_thread"]

#: ``time level logger message``: what ``run()`` and ``jrpc-unix serve`` print on stderr.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def default_logging(level: int | str = logging.INFO) -> None:
    """Log to stderr as :data:`LOG_FORMAT` at ``level`` unless the application has configured
    logging (a handler on the root logger or on ``jrpc_unix``): a process that just calls
    ``run()`` should say where it listens, and not only its warnings."""
    if logging.getLogger().handlers or logging.getLogger("jrpc_unix").handlers:
        return
    logging.basicConfig(level=level, format=LOG_FORMAT)


CAPACITY = 1000
#: How long a stopping server waits for the handlers to take the records still queued.
STOP_WAIT = 1.0
#: How long the thread, woken by a first record, lets more gather before handing them on: one
#: wake-up of the thread for a burst instead of one a record (with the audit trail at INFO, a
#: record a call: specs/performance.md). A log line is that much later, at most.
GATHER = 0.01


class _Offload(logging.Filter):
    """The filter on our loggers, its queue, and the thread that empties it."""

    def __init__(self) -> None:
        super().__init__()
        self._records: collections.deque[logging.LogRecord] = collections.deque()
        self._cv = threading.Condition()
        self._closing = False
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="jrpc-unix log", daemon=True)

    def filter(self, record: logging.LogRecord) -> bool:
        with self._cv:
            if len(self._records) >= CAPACITY:
                self.dropped += 1
            else:
                self._records.append(record)
                waiting = len(self._records)
                if waiting == 1 or waiting == CAPACITY // 2:  # wake it; or end its gathering
                    self._cv.notify()
        return False  # handled: the logger calls no handler itself

    def close(self, timeout: float) -> None:
        """Let the thread hand on what is queued, then end; wait for it ``timeout`` at most."""
        with self._cv:
            self._closing = True
            self._cv.notify()
        self.thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cv:
                if not self._records and not self._closing:
                    while not self._records and not self._closing:
                        self._cv.wait()
                    if not self._closing:  # woken by a first record: let a burst gather
                        self._cv.wait(GATHER)  # (close() notifies: no gathering then)
                if not self._records:
                    return
                records = list(self._records)
                self._records.clear()
                dropped, self.dropped = self.dropped, 0
            for record in records:
                _hand_on(record)
            if dropped:
                logger = logging.getLogger("jrpc_unix")
                note = logger.makeRecord(
                    logger.name,
                    logging.WARNING,
                    __file__,
                    0,
                    "%d log records dropped: the log handlers were too slow",
                    (dropped,),
                    None,
                )
                _hand_on(note)


def _hand_on(record: logging.LogRecord) -> None:
    with contextlib.suppress(Exception):  # handlers report their own errors (handleError)
        logging.getLogger(record.name).callHandlers(record)


_lock = threading.Lock()
_users = 0
_offload: _Offload | None = None
_filtered: list[logging.Logger] = []


def start_log_thread() -> None:
    """A server starts: route the library's records through the queue (once per process)."""
    global _users, _offload
    with _lock:
        _users += 1
        if _users > 1:
            return
        _offload = _Offload()
        _offload.thread.start()
        for name, logger in list(logging.Logger.manager.loggerDict.items()):
            if isinstance(logger, logging.Logger) and name.split(".")[0] == "jrpc_unix":
                logger.addFilter(_offload)
                _filtered.append(logger)


def stop_log_thread() -> None:
    """A server stopped: the last one hands the records back to the loggers and ends the thread."""
    global _users, _offload
    with _lock:
        _users -= 1
        if _users or _offload is None:
            return
        offload, _offload = _offload, None
        for logger in _filtered:
            logger.removeFilter(offload)
        _filtered.clear()
    offload.close(STOP_WAIT)
