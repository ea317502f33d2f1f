"""The log rate limiter: the first N per interval pass, the rest become one count; time passed in."""

from __future__ import annotations

import logging

import pytest

from state.eventlog import EventLog
from state.ratelimit import LimitedLog, RateLimiter


def test_first_burst_pass_then_suppressed_and_reported_in_the_next_interval():
    limiter = RateLimiter(burst=3, interval=10.0)
    verdicts = [limiter.check("accept", 100.0 + i * 0.01) for i in range(1000)]
    assert [allowed for allowed, _ in verdicts].count(True) == 3
    assert all(reported == 0 for _, reported in verdicts)
    assert limiter.check("accept", 110.0) == (True, 997)  # the new interval's first line reports the old one
    assert limiter.check("accept", 110.1) == (True, 0)


def test_keys_are_limited_separately():
    limiter = RateLimiter(burst=1, interval=5.0)
    assert limiter.check("a", 0.0) == (True, 0)
    assert limiter.check("a", 1.0) == (False, 0)
    assert limiter.check("b", 1.0) == (True, 0)


def test_flush_reports_intervals_that_are_over_and_only_those():
    limiter = RateLimiter(burst=1, interval=5.0)
    for t in (0.0, 0.1, 0.2):
        limiter.check("a", t)
    limiter.check("b", 4.0)
    limiter.check("b", 4.1)
    assert limiter.flush(4.5) == []
    assert limiter.flush(5.0) == [("a", 2)]
    assert limiter.flush(9.5) == [("b", 1)]
    assert limiter.flush(100.0) == []


def test_a_clock_that_goes_back_starts_a_new_interval():
    limiter = RateLimiter(burst=1, interval=5.0)
    limiter.check("a", 100.0)
    assert limiter.check("a", 101.0) == (False, 0)
    assert limiter.check("a", 50.0) == (True, 1)


def test_keys_are_bounded():
    limiter = RateLimiter(burst=1, interval=5.0, max_keys=4)
    for i in range(100):
        limiter.check(f"k{i}", 0.0)
    assert len(limiter._windows) == 4


def test_limited_log_writes_burst_lines_and_one_summary(caplog: pytest.LogCaptureFixture):
    logger = logging.getLogger("imageserver.test-ratelimit")
    limited = LimitedLog(EventLog(logger), RateLimiter(burst=2, interval=10.0))
    with caplog.at_level(logging.INFO, logger=logger.name):
        for i in range(10_000):
            limited.log("emfile", i * 0.0001, logging.ERROR, "accept-failed", n=i)
        limited.flush(20.0)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["event=accept-failed n=0", "event=accept-failed n=1",
                     "event=log-suppressed key=emfile suppressed=9998 interval=10s"]
