"""Log lines any client can cause are bounded per period, and what was dropped is counted."""

from __future__ import annotations

import logging

import pytest

from jrpc_unix._throttle import Throttle


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
