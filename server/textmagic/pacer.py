"""A process-wide pacer that keeps TextMagic calls under the account's rate limit."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio

# TextMagic counts arrivals; requests sent exactly one window apart can arrive closer than that.
JITTER_MARGIN = 0.02
# Waking at "oldest + window" may land a rounding error short of it; that must count as arrived.
_SLACK = 1e-6


class Pacer(Protocol):
    async def wait(self) -> None:
        """Return once a request may start."""


def window_of(rate: float) -> tuple[int, float]:
    """Requests allowed per window, and the window's length in seconds, for ``rate`` requests a second."""
    # Below one request a second, the window stretches to hold one request.
    capacity = max(1, int(rate))
    return capacity, capacity / rate * (1 + JITTER_MARGIN)


class RateLimiter:
    """Lets at most ``rate`` requests start in any window of one second; callers beyond that wait their turn.

    A burst within the limit goes out at once (a preview's look-ups, concurrent calls); only a request that
    would exceed the limit waits, until the oldest request in its window ages out.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._capacity, self._window = window_of(rate)
        self._clock = clock
        self._sleep = sleep
        self._started: deque[float] = deque()

    async def wait(self) -> None:
        while True:
            # No await between the check and the append: a slot cannot be taken twice.
            now = self._clock()
            while self._started and now - self._started[0] >= self._window - _SLACK:
                self._started.popleft()
            if len(self._started) < self._capacity:
                self._started.append(now)
                return
            await self._sleep(self._started[0] + self._window - now)
