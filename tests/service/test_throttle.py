"""Log lines any client can cause are bounded per period, and what was dropped is counted."""

from __future__ import annotations

import logging
import re

import pytest

from jrpc_unix._service.throttle import Throttle, short


def test_burst_then_one_summary_per_period(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = Throttle(logging.getLogger("t"), period=10, burst=3, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(50):
            throttle.warning("refused", "refused %d", i)
        throttle.warning("other", "a different kind is counted apart")
        now[0] = 10.0
        throttle.warning("refused", "refused again")
    assert [r.getMessage() for r in caplog.records] == [
        "refused 0",
        "refused 1",
        "refused 2",
        "a different kind is counted apart",
        "47 more 'refused' messages suppressed in 10 s",
        "refused again",
    ]


def test_a_kind_that_went_quiet_is_still_reported(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    throttle = Throttle(logging.getLogger("t"), period=10, burst=1, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(5):
            throttle.warning("refused", "refused %d", i)
        now[0] = 15.0
        throttle.warning("other", "something else")  # any line, a period later
    assert caplog.messages == ["refused 0", "4 more 'refused' messages suppressed in 15 s", "something else"]


def test_flush_reports_what_is_pending(caplog: pytest.LogCaptureFixture) -> None:
    throttle = Throttle(logging.getLogger("t"), period=10, burst=1, clock=lambda: 3.0)
    with caplog.at_level(logging.WARNING, logger="t"):
        throttle.warning("timeout", "one")
        throttle.warning("timeout", "two")
        throttle.flush()
        throttle.flush()  # nothing twice
    assert caplog.messages == ["one", "1 more 'timeout' messages suppressed in 0 s"]


def test_clients_cannot_grow_the_table_of_kinds(caplog: pytest.LogCaptureFixture) -> None:
    throttle = Throttle(logging.getLogger("t"), period=10, burst=1, clock=lambda: 0.0)
    with caplog.at_level(logging.WARNING, logger="t"):
        for i in range(10_000):
            throttle.warning(f"kind {i}", "line %d", i)
    assert len(throttle._windows) == 257  # 256 kinds, then one window for all the others
    assert len(caplog.records) == 257


def test_crash_tracebacks_are_throttled_by_method_and_exception_type(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from jrpc_unix import Methods
    from jrpc_unix._service.dispatch import Dispatcher

    dispatcher = Dispatcher(Methods())
    with caplog.at_level(logging.ERROR, logger="jrpc_unix.dispatch"):
        for exc in (TypeError("a"), TypeError("b"), ValueError("c" * 10_000)):
            dispatcher.answer_exception("add", 1, False, exc)
    first, second, third = caplog.records
    assert first.exc_info is not None  # the first TypeError of "add": its traceback
    assert second.exc_info is None  # the same again: one line, with its error id
    assert re.fullmatch(
        r"method 'add' raised TypeError: 'b'; error id \w{8} \(traceback as before\)", second.getMessage()
    )
    assert third.exc_info is not None  # another exception type: its own traceback
    assert len(third.getMessage()) < 200


def test_short_cuts_client_values_and_escapes_newlines() -> None:
    assert short("x" * 1_000_000).startswith("'xxx")
    assert len(short("x" * 1_000_000)) < 250
    assert short("a\nb") == "'a\\nb'"
    assert len(short({"k": [list(range(1000))] * 1000})) < 250
