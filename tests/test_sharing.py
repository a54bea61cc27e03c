"""Sharing the account: TextMagic's rate limit is per account, and this server is not alone on it. Two ordinary
stdio servers (Claude Desktop and Claude Code open at once), each pacing at the default rate, overrun the
account's 50 requests a second together; the 429s slow them down and no call fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from server.sandbox import Emulator
from server.textmagic import RateLimiter
from server.textmagic.pacer import Turns, caller_key
from tests.helpers import (
    ServedEmulator,
    http_server,
    mcp_client,
    newest,
    stdio_server,
    text_of,
    tm_requests,
)

pytestmark = pytest.mark.anyio


async def test_two_processes_on_one_account_answer_every_call(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.limit_rate(50)
    results: list[Any] = []
    with (tmp_path / "first.log").open("w") as first_log, (tmp_path / "second.log").open("w") as second_log:
        async with (
            stdio_server(served, first_log) as first,
            stdio_server(served, second_log) as second,
            anyio.create_task_group() as group,
        ):
            # Both started before either asks: their reports overlap.
            for client in (first, second):

                async def report(client: Any = client) -> None:
                    results.append(await client.call_tool("get_delivery_report", {"since": "2026-10-01"}))

                group.start_soon(report)
    assert len(results) == 2 and all(not r.is_error for r in results), [text_of(r) for r in results]
    assert len({r.structured_content["messages"] for r in results}) == 1
    assert emulator.rejected_for_rate > 0, "the account's limit was reached, and waited out"


async def test_waiting_callers_are_served_in_turn() -> None:
    # One request a second; a caller with a long report waiting, then another with one request: the second is
    # served next, not after the whole report.
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds
        await anyio.lowlevel.checkpoint()

    turns = Turns(RateLimiter(1, clock=lambda: now[0], sleep=sleep))
    served: list[str] = []

    async def request(caller: str) -> None:
        caller_key.set(caller)
        await turns.wait(at_most=60)
        served.append(caller)

    async with anyio.create_task_group() as group:
        for caller in ["report"] * 6 + ["light"]:
            group.start_soon(request, caller)
    assert served == ["report", "light", "report", "report", "report", "report", "report"]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_caller_may_have_only_so_many_calls_running_over_http(
    served: ServedEmulator, emulator: Emulator, mode: str
) -> None:
    ids = newest(emulator, 3)
    # Answers held long enough that the first two calls are still running when the third is made.
    emulator.latency = 2.0
    with http_server(served, calls_per_caller=2) as url:
        async with mcp_client(url, mode) as client, anyio.create_task_group() as group:
            results: list[Any] = []
            for session_id in ids[:2]:

                async def slow(session_id: int = session_id) -> None:
                    results.append(await client.call_tool("get_message_session", {"id": session_id}))

                group.start_soon(slow)
            assert await anyio.to_thread.run_sync(emulator.wait_for_requests, 2)
            refused = await client.call_tool("get_message_session", {"id": ids[2]})
    assert refused.is_error and "2 calls running on this server already" in text_of(refused)
    assert len(results) == 2 and not any(r.is_error for r in results)
    assert len(tm_requests(emulator)) == 2
