"""What replicas share through Redis (TEXTMAGIC_REDIS_URL): used confirmations, what previews showed, and the
account's rate limit, so that N processes behave as one.

Without the setting nothing here is loaded, and the redis package is not needed. If Redis cannot be reached at
start, the server does not start; if it fails later, a delete is refused rather than done unguarded, while reads
go on, each replica pacing at its share of the rate (the rate divided by the replicas last seen). A line says
when Redis fails and when it answers again; every command is a span.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from server.observability import metrics
from server.observability.tracing import span
from server.state.ledger import StateUnavailable
from server.state.previews import Shown
from server.state.settings import ConfigError
from server.textmagic.errors import RateLimited
from server.textmagic.pacer import (
    BACKOFF,
    FLOOR,
    HALVING_INTERVAL,
    RECOVERY_PER_SECOND,
    RateLimiter,
    window_of,
)
from server.textmagic.urls import without_credentials

logger = logging.getLogger(__name__)
PREFIX = "textmagic-sessions-mcp"
# Seconds to wait for Redis: it is on the same network as the replicas, or it is down.
TIMEOUT = 2.0
# A replica that took no slot for this long no longer counts among those sharing the rate.
REPLICAS_SEEN = 60.0
# While Redis fails, the pacer asks it again at most this often: a Redis that times out must not slow each
# request to TextMagic by its timeout.
ASK_AGAIN = 1.0

# A sliding window of request start times, kept in Redis's clock, its capacity cut by the shared backoff (KEYS[2]:
# the share of the rate, when it was set, and until when every replica holds off): if there is room, take it
# (0); else, how many microseconds to wait. Beside it, the replicas that took a slot within REPLICAS_SEEN
# (KEYS[3]; ARGV[5] this one, ARGV[6] the span in microseconds), so each knows its share should Redis fail.
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
redis.call('ZADD', KEYS[3], t, ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', t - tonumber(ARGV[6]))
redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[6]) / 1000))
local replicas = redis.call('ZCARD', KEYS[3])
local paused = tonumber(redis.call('HGET', KEYS[2], 'paused') or '0')
if paused > t then
  return {paused - t, replicas}
end
local share = tonumber(redis.call('HGET', KEYS[2], 'share') or '1')
local since = tonumber(redis.call('HGET', KEYS[2], 'since') or '0')
share = math.min(1, share + (t - since) / 1000000 * tonumber(ARGV[4]))
local capacity = math.max(1, math.floor(tonumber(ARGV[1]) * share))
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
if redis.call('ZCARD', KEYS[1]) < capacity then
  redis.call('ZADD', KEYS[1], t, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return {0, replicas}
end
local oldest = redis.call('ZRANGE', KEYS[1], -capacity, -capacity, 'WITHSCORES')
return {math.max(1, tonumber(oldest[2]) + window - t), replicas}
"""

# TextMagic answered 429 to a replica: halve the shared rate (once a second at most), hold every replica off
# for Retry-After (ARGV[1] microseconds, 0 if none named).
_THROTTLED = """
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
local share = tonumber(redis.call('HGET', KEYS[1], 'share') or '1')
local since = tonumber(redis.call('HGET', KEYS[1], 'since') or '0')
local halved = tonumber(redis.call('HGET', KEYS[1], 'halved') or '0')
share = math.min(1, share + (t - since) / 1000000 * tonumber(ARGV[2]))
if t - halved >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'share', math.max(tonumber(ARGV[4]), share * tonumber(ARGV[3])), 'since', t, 'halved', t)
end
local wait = tonumber(ARGV[1])
if wait > 0 then
  local paused = tonumber(redis.call('HGET', KEYS[1], 'paused') or '0')
  redis.call('HSET', KEYS[1], 'paused', math.max(paused, t + wait))
end
redis.call('PEXPIRE', KEYS[1], 600000)
return 0
"""


def check_reachable(url: str) -> None:
    """At start: ConfigError, naming the variable, unless Redis answers."""
    try:
        import redis
    except ImportError:
        raise ConfigError(
            "TEXTMAGIC_REDIS_URL is set, but the redis package is not installed: pip install "
            "'textmagic-sessions-mcp[redis]'"
        ) from None
    try:
        with redis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT) as connection:
            connection.ping()
    except redis.RedisError as exc:
        raise ConfigError(
            f"TEXTMAGIC_REDIS_URL: Redis at {without_credentials(url)} cannot be reached ({type(exc).__name__}); start it, fix the "
            "URL, or unset the variable to keep state in this process only"
        ) from None


class Availability:
    """Whether Redis answers, as its latest command found; a line when that changes, and the redis_up gauge."""

    def __init__(self, shown: str) -> None:
        self._shown = shown
        self.up = True
        self._failed_at = float("-inf")
        metrics.REDIS_UP.set(1)

    def worth_asking(self) -> bool:
        """Whether a command that has a fallback should try Redis now."""
        return self.up or anyio.current_time() - self._failed_at >= ASK_AGAIN

    @asynccontextmanager
    async def command(self, name: str) -> AsyncIterator[None]:
        """Around one command (or script): a span; StateUnavailable if Redis failed."""
        import redis

        with span(f"Redis {name}", "redis", **{"db.system.name": "redis"}):
            try:
                yield
            except redis.RedisError as exc:
                self._failed(exc)
                raise StateUnavailable(type(exc).__name__) from None
        self._answered()

    def _failed(self, exc: BaseException) -> None:
        self._failed_at = anyio.current_time()
        if self.up:
            self.up = False
            metrics.REDIS_UP.set(0)
            logger.warning(
                "Redis at %s is unreachable (%s): deletes are refused, and each replica paces at its share of the "
                "rate, until it answers again",
                self._shown,
                type(exc).__name__,
            )

    def _answered(self) -> None:
        if not self.up:
            self.up = True
            metrics.REDIS_UP.set(1)
            logger.warning(
                "Redis at %s answers again: deletes and the shared rate limit are back", self._shown
            )


class Shared:
    """One Redis connection pool, made in the running server's event loop, and what uses it."""

    def __init__(self, client: Any, availability: Availability) -> None:
        self._redis = client
        self._availability = availability

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[Shared]:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        try:
            yield cls(client, Availability(without_credentials(url)))
        finally:
            await client.aclose()

    @property
    def ledger(self) -> RedisLedger:
        return RedisLedger(self._redis, self._availability)

    def previews(self, ttl_seconds: int) -> RedisPreviews:
        return RedisPreviews(self._redis, self._availability, ttl_seconds)

    def pacer(self, account: str, instance: str, fallback: RateLimiter) -> RedisPacer:
        return RedisPacer(self._redis, self._availability, account, instance, fallback)


class RedisLedger:
    def __init__(self, client: Any, availability: Availability) -> None:
        self._redis = client
        self._command = availability.command

    async def epoch(self) -> str:
        # Made once, by whichever replica comes first (SET NX); lost with the rest if Redis loses its data.
        async with self._command("epoch"):
            await self._redis.set(f"{PREFIX}:epoch", secrets.token_hex(8), nx=True)
            value = await self._redis.get(f"{PREFIX}:epoch")
        return str(value.decode() if isinstance(value, bytes) else value)

    async def used(self, nonce: str) -> bool:
        async with self._command("used"):
            return bool(await self._redis.exists(f"{PREFIX}:used:{nonce}"))

    async def claim(self, nonce: str, expires: int) -> bool:
        # SET NX is one step in Redis: of replicas claiming at once, one is told it did.
        async with self._command("claim"):
            return bool(await self._redis.set(f"{PREFIX}:used:{nonce}", 1, nx=True, exat=expires))


class RedisPreviews:
    def __init__(self, client: Any, availability: Availability, ttl_seconds: int) -> None:
        self._redis = client
        self._command = availability.command
        self._ttl = ttl_seconds

    async def put(self, key: str, shown: Shown) -> None:
        async with self._command("preview.put"):
            await self._redis.set(f"{PREFIX}:preview:{key}", json.dumps(shown), ex=self._ttl)

    async def get(self, key: str) -> Shown | None:
        async with self._command("preview.get"):
            kept = await self._redis.get(f"{PREFIX}:preview:{key}")
        if kept is None:
            return None
        return {int(session_id): str(start) for session_id, start in json.loads(kept).items()}


class RedisPacer:
    """The account's rate limit, kept for every replica in one window in Redis (one per account, so servers
    of other accounts may share the Redis), and backed off for all of them when any is told 429. While Redis
    fails, ``fallback`` paces this process at its share: the rate divided by the replicas last seen."""

    def __init__(
        self, client: Any, availability: Availability, account: str, instance: str, fallback: RateLimiter
    ) -> None:
        self._redis = client
        self._availability = availability
        key = f"{PREFIX}:rate:{hashlib.sha256(account.encode()).hexdigest()[:16]}"
        self._keys = [key, f"{key}:backoff", f"{key}:replicas"]
        self._instance = instance
        self._capacity, window = window_of(fallback.rate)
        self._window_us = int(window * 1_000_000)
        self._fallback = fallback
        self._replicas = 1
        self._take = client.register_script(_TAKE)
        self._throttle = client.register_script(_THROTTLED)

    async def wait(self, *, at_most: float) -> None:
        while True:
            args = [
                self._capacity,
                self._window_us,
                secrets.token_hex(8),
                RECOVERY_PER_SECOND,
                self._instance,
                int(REPLICAS_SEEN * 1_000_000),
            ]
            try:
                if not self._availability.worth_asking():
                    raise StateUnavailable("not answering")
                async with self._availability.command("rate.take"):
                    wait_us, replicas = await self._take(keys=self._keys, args=args)
            except StateUnavailable:
                self._fallback.portion = 1 / self._replicas
                await self._fallback.wait(at_most=at_most)
                return
            self._replicas = max(1, int(replicas))
            self._fallback.portion = 1.0
            if not wait_us:
                return
            if wait_us / 1_000_000 > at_most:
                # Only a hold-off TextMagic asked for lasts that long.
                raise RateLimited(wait_us / 1_000_000)
            await anyio.sleep(int(wait_us) / 1_000_000)

    async def throttled(self, retry_after: float | None) -> None:
        # This process slows at once, whatever Redis says; every replica learns it through Redis.
        await self._fallback.throttled(retry_after)
        wait_us = int((retry_after or 0) * 1_000_000)
        args = [wait_us, RECOVERY_PER_SECOND, BACKOFF, FLOOR, int(HALVING_INTERVAL * 1_000_000)]
        with contextlib.suppress(StateUnavailable):
            async with self._availability.command("rate.throttled"):
                await self._throttle(keys=self._keys[1:2], args=args)
