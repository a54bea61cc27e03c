"""Replicas that share state through a real redis-server on loopback (TEXTMAGIC_REDIS_URL): a confirmation works once
across them, a preview made by one is confirmed on another, and together they keep the account's rate limit.
Redis gone at start stops the server; gone during a delete, the delete is refused, and reads go on."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.sandbox import Emulator
from server.state.settings import ConfigError, load_settings
from server.textmagic import RetryPolicy
from server.wiring.app import SessionsServer, build_server
from tests.helpers import (
    API_KEY,
    QUICK_RETRY,
    USERNAME,
    ServedEmulator,
    add_session,
    connect,
    free_port,
    newest,
    preview_token,
    running_redis,
    sent,
    text_of,
)

pytestmark = pytest.mark.anyio

SECRET = "replicas-share-this-secret-0123456789"


def replica(served: ServedEmulator, redis_url: str, **overrides: Any) -> SessionsServer:
    """A server process of its own (its memory, its pacer), sharing the secret and Redis with the others."""
    settings = load_settings(
        **{
            "username": USERNAME,
            "api_key": API_KEY,
            "base_url": served.url,
            "confirmation_secret": SECRET,
            "redis_url": redis_url,
            "rate_limit": 1000,
            **overrides,
        }
    )
    return build_server(settings, retry=RetryPolicy(**QUICK_RETRY))


async def test_a_confirmation_works_once_across_replicas(
    served: ServedEmulator, emulator: Emulator, redis_url: str
) -> None:
    ids = newest(emulator, 2)
    one, two = replica(served, redis_url), replica(served, redis_url)
    async with connect(one) as first, connect(two, "legacy") as second:
        token = await preview_token(first, "delete_message_sessions_bulk", {"ids": ids})
        confirming = {"ids": ids, "confirm": True, "confirmation_token": token}
        results: list[Any] = []
        async with anyio.create_task_group() as group:
            for client in (first, second, first, second):

                async def confirm(client: Any = client) -> None:
                    results.append(await client.call_tool("delete_message_sessions_bulk", confirming))

                group.start_soon(confirm)
    assert sum(1 for r in results if not r.is_error and r.structured_content["deleted"]) == 1
    assert sum(1 for r in results if r.is_error and "used already" in text_of(r)) == 3
    assert sent(emulator, "POST") == 1


async def test_a_preview_on_one_replica_is_confirmed_on_another(
    served: ServedEmulator, emulator: Emulator, redis_url: str
) -> None:
    ids = [
        add_session(emulator, 48_700_000 + n, datetime.now(UTC), title="Replica cleanup")["id"]
        for n in range(3)
    ]
    arguments = {"text": "replica cleanup"}
    async with connect(replica(served, redis_url)) as first:
        preview = await first.call_tool("delete_message_sessions_matching", arguments)
    token = preview.structured_content["confirmation_token"]
    async with connect(replica(served, redis_url)) as second:
        done = await second.call_tool(
            "delete_message_sessions_matching", {**arguments, "confirm": True, "confirmation_token": token}
        )
    assert done.structured_content["deleted_count"] == 3 and sorted(emulator.deleted_ids) == ids


async def test_replicas_keep_the_rate_limit_together(
    served: ServedEmulator, emulator: Emulator, redis_url: str
) -> None:
    # Two replicas at 5 requests/s, five calls each. Each pacing alone would let all ten start at once; sharing
    # one window, the sixth start waits until the first has aged out of it, a window (over a second) later
    # in Redis's clock. Delays only lengthen the time measured here, so the bound holds on any machine; when
    # the requests arrive at TextMagic is not asserted, as the network may bunch them.
    ids = newest(emulator, 10)
    servers = [replica(served, redis_url, rate_limit=5), replica(served, redis_url, rate_limit=5)]
    results: list[Any] = []
    async with connect(servers[0]) as first, connect(servers[1]) as second:
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for n, session_id in enumerate(ids):

                async def stat(client: Any = (first, second)[n % 2], session_id: int = session_id) -> None:
                    results.append(await client.call_tool("get_message_session_stat", {"id": session_id}))

                group.start_soon(stat)
        elapsed = time.perf_counter() - started
    assert len(results) == 10 and not any(r.is_error for r in results)
    assert elapsed >= 1.0, f"{elapsed:.2f} s: the replicas paced each on its own"


def test_redis_that_cannot_be_reached_stops_the_start(served: ServedEmulator) -> None:
    closed = f"redis://:pw-SECRET-77@127.0.0.1:{free_port()}/0"
    with pytest.raises(ConfigError) as refused:
        replica(served, closed)
    message = str(refused.value)
    assert (
        message.startswith("TEXTMAGIC_REDIS_URL: Redis at redis://127.0.0.1:")
        and "cannot be reached" in message
    )
    assert "pw-SECRET-77" not in message


async def test_redis_gone_refuses_deletes_and_reads_go_on(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    [session_id] = newest(emulator)
    with running_redis(tmp_path) as url:
        server = replica(served, url)
        async with connect(server) as client:
            token = await preview_token(client, "delete_message_session", {"id": session_id})
    # Redis is down now; the server was started while it was up.
    async with connect(server) as client:
        refused = await client.call_tool(
            "delete_message_session", {"id": session_id, "confirm": True, "confirmation_token": token}
        )
        read = await client.call_tool("get_message_session", {"id": session_id})
    assert (
        refused.is_error
        and "cannot be reached" in text_of(refused)
        and "not done unguarded" in text_of(refused)
    )
    assert emulator.deleted_ids == [] and sent(emulator, "DELETE") == 0
    assert not read.is_error, text_of(read)


async def test_a_used_token_stays_used_when_redis_loses_its_data(
    served: ServedEmulator, emulator: Emulator, redis_url: str
) -> None:
    import redis

    ids = newest(emulator, 2)
    async with connect(replica(served, redis_url)) as client:
        used = await preview_token(client, "delete_message_sessions_bulk", {"ids": ids[:1]})
        pending = await preview_token(client, "delete_message_sessions_bulk", {"ids": ids[1:]})
        first = await client.call_tool(
            "delete_message_sessions_bulk", {"ids": ids[:1], "confirm": True, "confirmation_token": used}
        )
        assert first.structured_content["deleted"] is True
        # Redis restarts empty (or from a snapshot older than the confirmation): its record of used tokens is gone.
        with redis.Redis.from_url(redis_url) as connection:
            connection.flushall()
        emulator.data.sessions.update({ids[0]: {"id": ids[0], "startTime": None, "title": "back again"}})
        replayed = await client.call_tool(
            "delete_message_sessions_bulk", {"ids": ids[:1], "confirm": True, "confirmation_token": used}
        )
        earlier = await client.call_tool(
            "delete_message_sessions_bulk", {"ids": ids[1:], "confirm": True, "confirmation_token": pending}
        )
    for refused in (replayed, earlier):
        assert refused.is_error and "cannot be known to be unused" in text_of(refused)
    assert sent(emulator, "POST") == 1
