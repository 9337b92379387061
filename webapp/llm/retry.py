"""When to send a request again: backoff with jitter, and the server's Retry-After, which
holds for every chat of a client (RateGate)."""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

OnWait = Callable[[float, str], None]  # told (seconds, the LLMError code waited out) first


@dataclass(frozen=True)
class RetryPolicy:
    """Retry 429, 5xx and connection failures, only before the first token arrived.

    The wait before retry n (0-based) is drawn uniformly from [0, base * 2**n] capped at
    `max_backoff` ("full jitter", so that many clients rate limited together do not come
    back in lockstep). A server's Retry-After replaces it (see RateGate) if it is at most
    `max_retry_after`; a longer one is not waited for: the request fails at once, saying
    when to try again.
    """

    max_retries: int = 3
    base_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 30.0

    def delay(self, attempt: int, rng=random) -> float:
        """Seconds to wait after failed attempt number `attempt` (0-based)."""
        return rng.uniform(0.0, min(self.max_backoff, self.base_backoff * 2**attempt))


class RateGate:
    """Until when the server said it refuses requests (its latest Retry-After), for all the
    chats of one client, i.e. of one process. While the gate is closed no chat sends: each
    request would be refused as well, and on a shared key (NIM's free tier: about 40
    requests a minute) every refused one makes the limit last longer."""

    def __init__(self) -> None:
        self._until = 0.0  # time.monotonic()
        self._lock = threading.Lock()

    def close_for(self, seconds: float) -> None:
        """The server refuses requests for `seconds` from now (the later end wins)."""
        with self._lock:
            self._until = max(self._until, time.monotonic() + seconds)

    def seconds_left(self) -> float:
        with self._lock:
            return max(0.0, self._until - time.monotonic())


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delay-seconds or HTTP-date), None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
