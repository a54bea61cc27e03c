"""A process-wide pacer that keeps TextMagic calls under the account's rate limit, and backs off when others use it.

TextMagic's limit is per account, shared with the customer's own sending and any other program using the key,
so a 429 means the account is busier than this process knew. Then the pacer halves its rate (at most once a
second: a burst of 429s from one moment is one signal), holds every request until a ``Retry-After`` has passed,
and climbs back to the full rate by RECOVERY_PER_SECOND of it each second without another 429.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Protocol

import anyio

from server.textmagic.errors import RateLimited

# TextMagic counts arrivals; requests sent exactly one window apart can arrive closer than that.
JITTER_MARGIN = 0.02
# Waking at "oldest + window" may land a rounding error short of it; that must count as arrived.
_SLACK = 1e-6
# Backing off: the share of the rate a 429 leaves, the least share ever kept, how fast the rate recovers.
BACKOFF = 0.5
FLOOR = 0.05
RECOVERY_PER_SECOND = 0.02
HALVING_INTERVAL = 1.0


class Pacer(Protocol):
    async def wait(self, *, at_most: float) -> None:
        """Return once a request may start; RateLimited at once if TextMagic asked everyone to hold off for
        longer than ``at_most`` seconds."""

    async def throttled(self, retry_after: float | None) -> None:
        """TextMagic answered 429: slow down, and wait ``retry_after`` seconds if it named them."""


def window_of(rate: float) -> tuple[int, float]:
    """Requests allowed per window, and the window's length in seconds, for ``rate`` requests a second."""
    # Below one request a second, the window stretches to hold one request.
    capacity = max(1, int(rate))
    return capacity, capacity / rate * (1 + JITTER_MARGIN)


class Backoff:
    """The share of the configured rate to use now: lowered by 429s, recovering with time."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._share = 1.0
        # Not read from the clock here: the pacer is made before any event loop runs.
        self._since = float("-inf")
        self._halved_at = float("-inf")
        self.paused_until = float("-inf")

    def share(self) -> float:
        if self._share >= 1.0:
            return 1.0
        return min(1.0, self._share + (self._clock() - self._since) * RECOVERY_PER_SECOND)

    def throttled(self, retry_after: float | None) -> None:
        now = self._clock()
        if now - self._halved_at >= HALVING_INTERVAL:
            self._share = max(FLOOR, self.share() * BACKOFF)
            self._since = self._halved_at = now
        if retry_after:
            self.paused_until = max(self.paused_until, now + retry_after)


class RateLimiter:
    """Lets at most ``rate`` requests start in any window of one second (less while backing off); callers beyond
    that wait their turn.

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
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._started: deque[float] = deque()
        self.backoff = Backoff(clock)
        # This process's part of the rate: all of it, unless it must share without a common window (Redis down).
        self.portion = 1.0

    def current_rate(self) -> float:
        """Requests a second allowed now: the rate, this process's portion of it, less while backing off."""
        return self.rate * self.portion * self.backoff.share()

    async def wait(self, *, at_most: float) -> None:
        while True:
            # No await between the check and the append: a slot cannot be taken twice.
            now = self._clock()
            if now < self.backoff.paused_until:
                held = self.backoff.paused_until - now
                if held > at_most:
                    raise RateLimited(held)
                await self._sleep(held)
                continue
            capacity, window = window_of(self.current_rate())
            while self._started and now - self._started[0] >= window - _SLACK:
                self._started.popleft()
            if len(self._started) < capacity:
                self._started.append(now)
                return
            await self._sleep(self._started[-capacity] + window - now)

    async def throttled(self, retry_after: float | None) -> None:
        self.backoff.throttled(retry_after)


# Whose turn a request waits in: the caller it is made for (over HTTP, a token's subject or a connection). The
# wiring sets it for each call; every request of one stdio server is one caller's.
caller_key: ContextVar[str] = ContextVar("caller_key", default="")


class Turns:
    """Slots of a pacer handed out in turn among callers: while several wait, each caller's next request goes
    in a round, so one caller's long report cannot starve another's one request. A caller's own requests keep
    their order."""

    def __init__(self, pacer: Pacer) -> None:
        self._pacer = pacer
        self._waiting: dict[str, deque[object]] = {}
        self._ring: deque[str] = deque()
        self._turn = anyio.Condition()

    async def wait(self, *, at_most: float) -> None:
        key = caller_key.get()
        me = object()
        async with self._turn:
            if key not in self._waiting:
                self._waiting[key] = deque()
                self._ring.append(key)
            self._waiting[key].append(me)
            try:
                while self._ring[0] != key or self._waiting[key][0] is not me:
                    await self._turn.wait()
            except BaseException:
                self._leave(key, me)
                raise
        try:
            # One request at a time takes its slot; a slot free now is taken at once.
            await self._pacer.wait(at_most=at_most)
        finally:
            async with self._turn:
                self._leave(key, me)

    def _leave(self, key: str, me: object) -> None:
        queue = self._waiting[key]
        was_head = queue[0] is me and self._ring[0] == key
        queue.remove(me)
        if was_head:
            # Served: to the back of the round, with whatever else it waits for.
            self._ring.popleft()
            if queue:
                self._ring.append(key)
        if not queue:
            del self._waiting[key]
            if key in self._ring:
                self._ring.remove(key)
        self._turn.notify_all()

    async def throttled(self, retry_after: float | None) -> None:
        await self._pacer.throttled(retry_after)
