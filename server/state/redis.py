"""What replicas share through Redis (TEXTMAGIC_REDIS_URL): used confirmations, what previews showed, and the
account's rate limit, so that N processes behave as one.

Without the setting nothing here is loaded, and the redis package is not needed. If Redis cannot be reached at
start, the server does not start; if it fails later, a delete is refused rather than done unguarded, while reads
fall back to the process's own pacer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from server.state.ledger import StateUnavailable
from server.state.previews import Shown
from server.state.settings import ConfigError
from server.textmagic.errors import RateLimited
from server.textmagic.pacer import BACKOFF, FLOOR, HALVING_INTERVAL, RECOVERY_PER_SECOND, Pacer, window_of
from server.textmagic.urls import without_credentials

logger = logging.getLogger(__name__)
PREFIX = "textmagic-sessions-mcp"
# Seconds to wait for Redis: it is on the same network as the replicas, or it is down.
TIMEOUT = 2.0

# A sliding window of request start times, kept in Redis's clock, its capacity cut by the shared backoff (KEYS[2]:
# the share of the rate, when it was set, and until when every replica holds off): if there is room, take it
# (0); else, how many microseconds to wait.
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
local paused = tonumber(redis.call('HGET', KEYS[2], 'paused') or '0')
if paused > t then
  return paused - t
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
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], -capacity, -capacity, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - t)
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


class Shared:
    """One Redis connection pool, made in the running server's event loop, and what uses it."""

    def __init__(self, client: Any) -> None:
        self._redis = client

    @classmethod
    @asynccontextmanager
    async def connect(cls, url: str) -> AsyncIterator[Shared]:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        try:
            yield cls(client)
        finally:
            await client.aclose()

    @property
    def ledger(self) -> RedisLedger:
        return RedisLedger(self._redis)

    def previews(self, ttl_seconds: int) -> RedisPreviews:
        return RedisPreviews(self._redis, ttl_seconds)

    def pacer(self, account: str, rate: float, fallback: Pacer) -> RedisPacer:
        return RedisPacer(self._redis, account, rate, fallback)


class RedisLedger:
    def __init__(self, client: Any) -> None:
        self._redis = client

    async def epoch(self) -> str:
        # Made once, by whichever replica comes first (SET NX); lost with the rest if Redis loses its data.
        async with _guarded():
            await self._redis.set(f"{PREFIX}:epoch", secrets.token_hex(8), nx=True)
            value = await self._redis.get(f"{PREFIX}:epoch")
        return str(value.decode() if isinstance(value, bytes) else value)

    async def used(self, nonce: str) -> bool:
        async with _guarded():
            return bool(await self._redis.exists(f"{PREFIX}:used:{nonce}"))

    async def claim(self, nonce: str, expires: int) -> bool:
        # SET NX is one step in Redis: of replicas claiming at once, one is told it did.
        async with _guarded():
            return bool(await self._redis.set(f"{PREFIX}:used:{nonce}", 1, nx=True, exat=expires))


class RedisPreviews:
    def __init__(self, client: Any, ttl_seconds: int) -> None:
        self._redis = client
        self._ttl = ttl_seconds

    async def put(self, key: str, shown: Shown) -> None:
        async with _guarded():
            await self._redis.set(f"{PREFIX}:preview:{key}", json.dumps(shown), ex=self._ttl)

    async def get(self, key: str) -> Shown | None:
        async with _guarded():
            kept = await self._redis.get(f"{PREFIX}:preview:{key}")
        if kept is None:
            return None
        return {int(session_id): str(start) for session_id, start in json.loads(kept).items()}


class RedisPacer:
    """The account's rate limit, kept for every replica in one window in Redis (one per account, so servers
    of other accounts may share the Redis), and backed off for all of them when any is told 429."""

    def __init__(self, client: Any, account: str, rate: float, fallback: Pacer) -> None:
        self._redis = client
        key = f"{PREFIX}:rate:{hashlib.sha256(account.encode()).hexdigest()[:16]}"
        self._keys = [key, f"{key}:backoff"]
        self._capacity, window = window_of(rate)
        self._window_us = int(window * 1_000_000)
        self._fallback = fallback
        self._take = client.register_script(_TAKE)
        self._throttle = client.register_script(_THROTTLED)
        self._warned = False

    async def wait(self, *, at_most: float) -> None:
        import redis

        while True:
            try:
                wait_us = await self._take(
                    keys=self._keys,
                    args=[self._capacity, self._window_us, secrets.token_hex(8), RECOVERY_PER_SECOND],
                )
            except redis.RedisError as exc:
                if not self._warned:
                    logger.warning(
                        "Redis is unreachable (%s): pacing this process on its own", type(exc).__name__
                    )
                    self._warned = True
                await self._fallback.wait(at_most=at_most)
                return
            self._warned = False
            if not wait_us:
                return
            if wait_us / 1_000_000 > at_most:
                # Only a hold-off TextMagic asked for lasts that long.
                raise RateLimited(wait_us / 1_000_000)
            await anyio.sleep(int(wait_us) / 1_000_000)

    async def throttled(self, retry_after: float | None) -> None:
        import redis

        # This process slows at once, whatever Redis says; every replica learns it through Redis.
        await self._fallback.throttled(retry_after)
        wait_us = int((retry_after or 0) * 1_000_000)
        args = [wait_us, RECOVERY_PER_SECOND, BACKOFF, FLOOR, int(HALVING_INTERVAL * 1_000_000)]
        try:
            await self._throttle(keys=self._keys[1:], args=args)
        except redis.RedisError as exc:
            logger.warning("Redis is unreachable (%s): backing off this process alone", type(exc).__name__)


@asynccontextmanager
async def _guarded() -> AsyncIterator[None]:
    import redis

    try:
        yield
    except redis.RedisError as exc:
        raise StateUnavailable(type(exc).__name__) from None
