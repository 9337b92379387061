"""When to retry: backoff with full jitter, and the server's Retry-After."""

import random
from datetime import UTC, datetime

from webapp.llm.retry import RateGate, RetryPolicy, parse_retry_after


def test_retry_after_in_seconds():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(" 0 ") == 0.0


def test_retry_after_as_an_http_date():
    now = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 25 Nov 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 25 Nov 2026 11:00:00 GMT", now=now) == 0.0  # in the past


def test_missing_or_unreadable_retry_after_is_ignored():
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("soon") is None


def test_backoff_grows_exponentially_with_jitter_under_a_cap():
    policy = RetryPolicy(base_backoff=0.5, max_backoff=3.0)
    rng = random.Random(1)
    waits = {attempt: [policy.delay(attempt, rng=rng) for _ in range(200)] for attempt in range(5)}
    assert max(waits[0]) <= 0.5
    assert max(waits[2]) <= 2.0 and max(waits[2]) > 1.0
    assert max(waits[4]) <= 3.0
    assert len(set(waits[1])) == 200  # jittered: no two clients retry in lockstep


def test_a_retry_after_that_is_not_a_finite_number_is_ignored():
    """"inf" would close the rate gate for good."""
    assert parse_retry_after("inf") is None
    assert parse_retry_after("nan") is None


def test_the_rate_gate_holds_until_the_latest_end_it_was_told():
    gate = RateGate()
    assert gate.seconds_left() == 0.0
    gate.close_for(30)
    gate.close_for(5)  # an earlier end does not reopen it
    assert 29 < gate.seconds_left() <= 30
