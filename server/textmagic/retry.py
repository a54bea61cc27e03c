"""When and how long to wait before trying a TextMagic request again."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from server.textmagic.errors import Failure

# Statuses that say "not now" rather than "not this": TextMagic's rate limit, errors, maintenance.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded by attempts and by a total time budget."""

    budget: float = 10.0
    max_attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, failure: Failure, attempts: int, elapsed: float) -> float | None:
        """The retry decision, in one place: seconds to wait before trying ``failure`` again, or None to give up.

        Tried again only when the failure is transient, attempts remain, and the wait fits in the budget. A
        request refused for the rate limit is not an attempt that failed: only the time budget bounds those,
        while the pacer slows down. The wait is TextMagic's ``Retry-After`` when it named one, else a jittered
        backoff.
        """
        if not failure.retryable or (attempts >= self.max_attempts and not failure.throttled):
            return None
        wait = failure.retry_after if failure.retry_after is not None else self.backoff(attempts)
        return wait if elapsed + wait <= self.budget else None

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) when the server named none."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        # Full jitter: clients that failed together do not come back together.
        return (rng or random).uniform(0, ceiling)


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())
