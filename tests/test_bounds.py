"""Every read is bounded by its budget of requests to TextMagic (TEXTMAGIC_CALL_BUDGET) and says what it covered;
a page count TextMagic claims is never turned into work or memory all at once."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.sandbox import Emulator
from tests.helpers import add_session, connect, tm_requests

pytestmark = pytest.mark.anyio


def black_friday(emulator: Emulator) -> int:
    [session_id] = [i for i, s in emulator.data.sessions.items() if s["title"] == "Black Friday"]
    return session_id


async def test_a_report_by_id_stops_at_the_budget_and_says_so(make_server: Any, emulator: Emulator) -> None:
    # The send-out has 52 pages of messages; the budget allows 10 requests, the session's own among them.
    async with connect(make_server(call_budget=10)) as client:
        result = await client.call_tool("get_delivery_report", {"id": black_friday(emulator)})
    report = result.structured_content
    assert not result.is_error and report["complete"] is False
    assert (
        "TEXTMAGIC_CALL_BUDGET" in report["reason"]
        and "0 of 1 sessions were read in full" in report["reason"]
    )
    assert 0 < report["messages"] < 5200
    assert len(tm_requests(emulator)) == 10


async def test_a_period_of_many_small_sessions_covers_the_newest_that_fit(
    make_server: Any, emulator: Emulator
) -> None:
    # Verification codes: a session each, one recipient each, every minute of a day.
    start = datetime(2026, 11, 18, tzinfo=UTC)
    for n in range(300):
        add_session(emulator, 49_000_000 + n, start + timedelta(minutes=n), title="Your code")
    async with connect(make_server(call_budget=40)) as client:
        result = await client.call_tool("get_delivery_report", {"since": "2026-11-18", "until": "2026-11-18"})
    report = result.structured_content
    assert not result.is_error and report["complete"] is False, report
    assert "covers the newest" in report["reason"] and "back to 2026-11-18T" in report["reason"]
    assert report["sessions"] == report["messages"] < 300
    assert len(tm_requests(emulator)) <= 40


async def test_failed_recipients_and_the_report_resource_are_bounded_too(
    make_server: Any, emulator: Emulator
) -> None:
    session_id = black_friday(emulator)
    async with connect(make_server(call_budget=10)) as client:
        failed = await client.call_tool("get_recipients", {"id": session_id})
        before = len(tm_requests(emulator))
        markdown = await client.read_resource(f"textmagic://sessions/{session_id}/report")
    assert failed.structured_content["complete"] is False and before == 10
    assert len(tm_requests(emulator)) - before == 10
    # Markdown: underscores escaped.
    assert "TEXTMAGIC\\_CALL\\_BUDGET" in markdown.contents[0].text


async def test_a_claimed_page_count_costs_neither_requests_nor_memory(
    make_server: Any, emulator: Emulator
) -> None:
    session_id = black_friday(emulator)
    hostile = {"page": 1, "limit": 100, "pageCount": 200_000, "resources": []}
    emulator.fail_next(200, hostile, path=f"/api/v2/sessions/{session_id}/messages")
    tracemalloc.start()
    try:
        async with connect(make_server(call_budget=50)) as client:
            result = await client.call_tool("get_delivery_report", {"id": session_id})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.structured_content["complete"] is False
    assert len(tm_requests(emulator)) == 50
    # A task or an entry per claimed page would take hundreds of megabytes.
    assert peak < 30 * 2**20, f"{peak / 2**20:.1f} MB"


async def test_ranking_sessions_ranks_as_many_as_the_budget_allows(
    make_server: Any, emulator: Emulator
) -> None:
    async with connect(make_server(call_budget=12)) as client:
        result = await client.call_tool("find_message_sessions", {"sort": "worst_delivery"})
    found = result.structured_content
    assert not result.is_error and found["complete"] is False and "TEXTMAGIC_CALL_BUDGET" in found["reason"]
    assert len(tm_requests(emulator)) <= 12
