"""How long to wait before retrying a failed request: backoff with jitter, or Retry-After."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True)
class RetryPolicy:
    """Retry 429, 5xx and connection failures, only before the first token arrived.

    The wait before retry n (0-based) is drawn uniformly from [0, base * 2**n] capped at
    `max_backoff` ("full jitter", so that many clients rate limited together do not come
    back in lockstep). A server's Retry-After overrides it, capped at `max_retry_after`.
    """

    max_retries: int = 3
    base_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, retry_after: str | None = None, rng=random) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        honoured = parse_retry_after(retry_after)
        if honoured is not None:
            return min(honoured, self.max_retry_after)
        return rng.uniform(0.0, min(self.max_backoff, self.base_backoff * 2**attempt))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or HTTP-date), None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
