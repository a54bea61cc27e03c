"""What replicas share through Redis (TEXTMAGIC_REDIS_URL): used confirmations, what previews showed, and the
account's rate limit, so that N processes behave as one.

Without the setting nothing here is loaded, and the redis package is not needed. If Redis cannot be reached at
start, the server does not start; if it fails later, a delete is refused rather than done unguarded, while reads
fall back to the process's own pacer.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import anyio

from server.state.ledger import StateUnavailable
from server.state.settings import ConfigError
from server.textmagic.pacer import Pacer, window_of
from server.textmagic.urls import without_credentials

logger = logging.getLogger(__name__)
PREFIX = "textmagic-sessions-mcp"
# Seconds to wait for Redis: it is on the same network as the replicas, or it is down.
TIMEOUT = 2.0

# A sliding window of request start times, kept in Redis's clock: if there is room, take it (0); else, how many
# microseconds until the oldest start leaves the window.
_TAKE = """
local now = redis.call('TIME')
local t = tonumber(now[1]) * 1000000 + tonumber(now[2])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t - window)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], t, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - t)
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

    async def put(self, key: str, ids: Iterable[int]) -> None:
        async with _guarded():
            await self._redis.set(f"{PREFIX}:preview:{key}", ",".join(map(str, ids)), ex=self._ttl)

    async def get(self, key: str) -> frozenset[int] | None:
        async with _guarded():
            kept = await self._redis.get(f"{PREFIX}:preview:{key}")
        if kept is None:
            return None
        return frozenset(int(part) for part in kept.decode().split(",") if part)


class RedisPacer:
    """The account's rate limit, kept for every replica in one window in Redis (one per account, so servers
    of other accounts may share the Redis)."""

    def __init__(self, client: Any, account: str, rate: float, fallback: Pacer) -> None:
        self._redis = client
        self._key = f"{PREFIX}:rate:{hashlib.sha256(account.encode()).hexdigest()[:16]}"
        self._capacity, window = window_of(rate)
        self._window_us = int(window * 1_000_000)
        self._fallback = fallback
        self._script = client.register_script(_TAKE)
        self._warned = False

    async def wait(self) -> None:
        import redis

        while True:
            try:
                wait_us = await self._script(
                    keys=[self._key], args=[self._capacity, self._window_us, secrets.token_hex(8)]
                )
            except redis.RedisError as exc:
                if not self._warned:
                    logger.warning(
                        "Redis is unreachable (%s): pacing this process on its own", type(exc).__name__
                    )
                    self._warned = True
                await self._fallback.wait()
                return
            self._warned = False
            if not wait_us:
                return
            await anyio.sleep(int(wait_us) / 1_000_000)


@asynccontextmanager
async def _guarded() -> AsyncIterator[None]:
    import redis

    try:
        yield
    except redis.RedisError as exc:
        raise StateUnavailable(type(exc).__name__) from None
