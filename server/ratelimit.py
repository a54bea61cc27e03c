"""A process-wide request pacer that keeps TextMagic calls under the account's rate limit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


class RateLimiter:
    """Spaces requests at least 1/rate seconds apart; callers beyond that wait their turn.

    Even spacing rather than a burst allowance: TextMagic counts requests per second, and a full bucket
    followed by its refill could put twice the limit into one second.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = anyio.current_time,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    ) -> None:
        self._interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next_slot = float("-inf")

    async def wait(self) -> None:
        # Claiming the slot needs no lock: nothing between reading and moving _next_slot awaits.
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval
        if slot > now:
            await self._sleep(slot - now)
