"""The delivery-insight tools through the SDK's client, against the emulator: counts that agree exactly with the
messages, filters at the edges of days in a zone, the scan's stop and bound, deduplicated failures, progress,
and arguments refused before anything reaches TextMagic."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from server.sandbox import Emulator
from tests.helpers import ANCHOR, add_session, connect, outcome_of, text_of, tm_requests

pytestmark = pytest.mark.anyio

BUCKETS = ("delivered", "failed", "rejected", "pending", "other")


def largest(emulator: Emulator) -> int:
    return max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))


def live(emulator: Emulator, session_id: int) -> list[dict[str, Any]]:
    return [m for m in emulator.data.messages[session_id] if not m["deleted"]]


def counted(messages: list[dict[str, Any]]) -> dict[str, int]:
    tally = Counter(outcome_of(m["status"]) for m in messages)
    return {bucket: tally[bucket] for bucket in BUCKETS}


async def test_a_report_counts_exactly_what_the_messages_say(
    make_server: Any, emulator: Emulator, era: str
) -> None:
    session_id = largest(emulator)
    messages = live(emulator, session_id)
    async with connect(make_server(), era) as client:
        result = await client.call_tool(
            "get_delivery_report",
            {"id": session_id, "group_by": ["country", "reject_reason"], "failed_limit": 500},
        )
        stat = (await client.call_tool("get_message_session_stat", {"id": session_id})).structured_content
    assert not result.is_error, text_of(result)
    report = result.structured_content
    expected = counted(messages)
    assert {bucket: report["outcome"][bucket] for bucket in BUCKETS} == expected
    final = expected["delivered"] + expected["failed"] + expected["rejected"]
    assert report["outcome"]["delivery_rate"] == round(expected["delivered"] / final, 4)
    assert report["messages"] == len(messages) == stat["all"]
    # Where TextMagic's statistics have the same buckets, they agree.
    assert (report["outcome"]["delivered"], report["outcome"]["failed"], report["outcome"]["rejected"]) == (
        stat["delivered"],
        stat["failed"],
        stat["rejected"],
    )
    # Cost as billed: TextMagic charged the deleted messages too, which the counts leave out and name apart.
    everything = emulator.data.messages[session_id]
    gone = [m for m in everything if m["deleted"]]
    assert report["outcome"]["cost"] == pytest.approx(emulator.data.sessions[session_id]["price"])
    assert report["outcome"]["cost"] == pytest.approx(sum(m["price"] for m in everything))
    assert gone and report["deleted"]["messages"] == len(gone)
    assert report["deleted"]["cost"] == pytest.approx(sum(m["price"] for m in gone))
    by_country = {row.get("key"): row for row in report["groups"]["country"]}
    for country in {m["country"] for m in messages}:
        mine = counted([m for m in messages if m["country"] == country])
        assert {bucket: by_country[country][bucket] for bucket in BUCKETS} == mine
    assert report["failed_count"] == expected["failed"] + expected["rejected"]
    assert len(report["failed"]) == min(500, report["failed_count"])
    assert {row["status"] for row in report["failed"]} <= set("efujg")
    reasons = {row.get("key") for row in report["groups"]["reject_reason"]}
    assert reasons >= {m.get("rejectReason") for m in messages if m["status"] == "j"}
    # The messages and the session, each page once, nothing else: no statistics, no session list.
    paths = [r.path for r in tm_requests(emulator)]
    pages = [r.query["page"] for r in tm_requests(emulator) if r.path.endswith("/messages")]
    assert sorted(pages, key=int) == [str(n) for n in range(1, math.ceil(len(everything) / 100) + 1)]
    assert paths.count(f"/api/v2/sessions/{session_id}") == 1 and "/api/v2/sessions" not in paths


async def test_one_sessions_pages_are_read_concurrently(make_server: Any, emulator: Emulator) -> None:
    """A report of one session read its pages one at a time (8.4 s for 5,200 recipients at 150 ms instead of
    1.4 s): the workers were as many as the sessions."""
    session_id = largest(emulator)
    # Held long enough that pages read one after another could never overlap.
    emulator.latency = 0.05
    async with connect(make_server()) as client:
        result = await client.call_tool("get_delivery_report", {"id": session_id, "failed_limit": 0})
    assert not result.is_error
    assert emulator.most_at_once >= 8


async def test_a_default_report_is_short_and_says_what_was_cut(make_server: Any, emulator: Emulator) -> None:
    # The campaign with the most failures after the large send-out.
    session_id = sorted(
        emulator.data.messages,
        key=lambda i: -sum(outcome_of(m["status"]) in ("failed", "rejected") for m in live(emulator, i)),
    )[1]
    async with connect(make_server()) as client:
        result = await client.call_tool("get_delivery_report", {"id": session_id})
    report = result.structured_content
    assert len(report["failed"]) == 20 and report["failed_count"] > 20
    assert "get_recipients" in report["more"] and "failed_limit" in report["more"]
    # The text is a compact table, well under the 1,000 tokens a default report may take (four characters
    # a token at the least, in cl100k).
    assert len(text_of(result)) < 3000 and '"columns"' in text_of(result)


def edge_sessions(emulator: Emulator) -> tuple[int, int]:
    """Two sessions half an hour before midnight UTC on 18 and 19 November: 19 and 20 November in Berlin."""
    early = add_session(emulator, 48_300_001, datetime(2026, 11, 18, 23, 30, tzinfo=UTC), title="Edge case")
    late = add_session(emulator, 48_300_002, datetime(2026, 11, 19, 23, 30, tzinfo=UTC), title="edge CASE")
    return early["id"], late["id"]


@pytest.mark.parametrize(("timezone", "index"), [("Europe/Berlin", 0), ("UTC", 1)])
async def test_a_date_is_that_whole_day_in_the_zone(
    make_server: Any, emulator: Emulator, timezone: str, index: int
) -> None:
    expected = edge_sessions(emulator)[index]
    day = {"since": "2026-11-19", "until": "2026-11-19", "timezone": timezone, "text": "edge case"}
    async with connect(make_server()) as client:
        found = await client.call_tool("find_message_sessions", day)
        report = await client.call_tool("get_delivery_report", day)
    assert [s["id"] for s in found.structured_content["sessions"]] == [expected]
    assert found.structured_content["matched"] == 1 and report.structured_content["sessions"] == 1


async def test_the_server_zone_is_the_default(make_server: Any, emulator: Emulator) -> None:
    early, _ = edge_sessions(emulator)
    async with connect(make_server(timezone="Europe/Berlin")) as client:
        found = await client.call_tool(
            "find_message_sessions", {"since": "2026-11-19", "until": "2026-11-19"}
        )
    assert early in [s["id"] for s in found.structured_content["sessions"]]


async def test_find_filters_sorts_and_ranks(make_server: Any, emulator: Emulator, era: str) -> None:
    sessions = emulator.data.sessions.values()
    async with connect(make_server(), era) as client:
        api = await client.call_tool("find_message_sessions", {"source": ["A"], "limit": 100})
        voice = await client.call_tool("find_message_sessions", {"destination": ["s", "v"], "limit": 100})
        cheap_first = await client.call_tool("find_message_sessions", {"sort": "highest_price", "limit": 3})
        oldest = await client.call_tool("find_message_sessions", {"sort": "oldest", "limit": 1})
        worst = await client.call_tool(
            "find_message_sessions", {"since": "2026-10-20", "sort": "worst_delivery", "limit": 5}
        )
    assert {s["id"] for s in api.structured_content["sessions"]} == {
        s["id"] for s in sessions if s["source"] == "A"
    }
    assert {s["id"] for s in voice.structured_content["sessions"]} == {
        s["id"] for s in sessions if s["destination"] in "sv"
    }
    prices = sorted((s["price"] for s in sessions), reverse=True)[:3]
    assert [s["price"] for s in cheap_first.structured_content["sessions"]] == prices
    assert oldest.structured_content["sessions"][0]["startTime"] == min(s["startTime"] for s in sessions)
    ranked = worst.structured_content["sessions"]
    rates = [s["delivery_rate"] for s in ranked]
    assert rates == sorted(rates) and all("failed" in s for s in ranked)
    for row in ranked:
        mine = counted(live(emulator, row["id"]))
        assert {bucket: row[bucket] for bucket in BUCKETS} == mine
    everything = sum(s["numbersCount"] for s in sessions if s["source"] == "A")
    assert api.structured_content["recipients"] == everything


async def test_the_scan_stops_at_the_first_page_older_than_since(
    make_server: Any, emulator: Emulator
) -> None:
    # 800 sessions of last year, with ids below every real one: they come last in TextMagic's list.
    for n in range(800):
        add_session(emulator, 1000 + n, datetime(2025, 6, 1, tzinfo=UTC) + timedelta(hours=n))
    async with connect(make_server()) as client:
        found = await client.call_tool("find_message_sessions", {"since": "2026-11-01"})
    pages = sorted(int(r.query["page"]) for r in tm_requests(emulator) if r.path == "/api/v2/sessions")
    assert found.structured_content["complete"] is True and found.structured_content["matched"] > 0
    # Eight pages hold the account (100 a page); a page or two past the newest were enough.
    assert pages[0] == 1 and max(pages) <= 3 and len(set(pages)) == len(pages)


async def test_the_scan_stops_at_its_bound_and_says_so(make_server: Any, emulator: Emulator) -> None:
    for n in range(250):
        add_session(emulator, 1000 + n, datetime(2025, 6, 1, tzinfo=UTC) + timedelta(hours=n))
    async with connect(make_server(scan_limit=100)) as client:
        found = await client.call_tool("find_message_sessions", {"text": "made up"})
    result = found.structured_content
    assert result["complete"] is False and "TEXTMAGIC_SCAN_LIMIT" in result["reason"]
    assert result["scanned"] == 100
    assert [r.query["page"] for r in tm_requests(emulator) if r.path == "/api/v2/sessions"] == ["1"]


async def test_failed_recipients_once_per_number(make_server: Any, emulator: Emulator, era: str) -> None:
    # Six weeks of campaigns, up to the morning of the large send-out (16 November, 10:00).
    window = {"since": "2026-10-01", "until": "2026-11-16T09:00"}
    inside = [i for i, s in emulator.data.sessions.items() if s["startTime"] < "2026-11-16T09"]
    async with connect(make_server(), era) as client:
        failing = {**window, "outcomes": ["failed", "rejected"], "limit": 1000}
        everyone = await client.call_tool("get_recipients", failing)
        retry = await client.call_tool("get_recipients", {**failing, "exclude_delivered_later": True})
        rejected = await client.call_tool("get_recipients", {**window, "statuses": ["j"], "limit": 1000})
    failed: dict[str, list[dict[str, Any]]] = {}
    delivered: dict[str, str] = {}
    sent: Counter[str] = Counter()
    for messages in (emulator.data.messages[i] for i in inside):
        for m in messages:
            if m["deleted"]:
                continue
            sent[m["receiver"]] += 1
            if outcome_of(m["status"]) in ("failed", "rejected"):
                failed.setdefault(m["receiver"], []).append(m)
            elif m["status"] == "d":
                delivered[m["receiver"]] = max(m["messageTime"], delivered.get(m["receiver"], ""))
    rows = {row["number"]: row for row in everyone.structured_content["recipients"]}
    assert set(rows) == set(failed) and everyone.structured_content["total"] == len(failed)
    for number, messages in failed.items():
        last = max(messages, key=lambda m: m["messageTime"])
        assert rows[number]["failed"] + rows[number]["rejected"] == len(messages)
        assert rows[number]["messages"] == sent[number]
        assert rows[number]["last_status"] == last["status"]
        assert rows[number]["delivered_later"] == (delivered.get(number, "") > last["messageTime"])
        assert set(rows[number]["sessions"]) == {m["sessionId"] for m in messages}
    # The seed holds numbers that failed again and again, and numbers delivered after they failed.
    assert max(row["failed"] + row["rejected"] for row in rows.values()) >= 3
    later = {number for number, row in rows.items() if row["delivered_later"]}
    assert later and {row["number"] for row in retry.structured_content["recipients"]} == set(rows) - later
    assert {row["last_status"] for row in rejected.structured_content["recipients"]} == {"j"}


async def test_long_reads_report_progress(make_server: Any, emulator: Emulator) -> None:
    reports: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        reports.append((done, total, message))

    async with connect(make_server()) as client:
        await client.call_tool("get_delivery_report", {"since": "2026-11-17"}, progress_callback=progress)
    messages = [message or "" for _, _, message in reports]
    assert any("sessions scanned" in m for m in messages) and any("pages read" in m for m in messages)
    pages = [(done, total) for done, total, m in reports if m and "pages read" in m]
    assert pages[-1][0] == pages[-1][1], "the last report says every page was read"


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("find_message_sessions", {"since": "2026-13-45"}, "since: not an ISO 8601 date"),
        ("find_message_sessions", {"until": "yesterday"}, "until: not an ISO 8601 date"),
        ("get_delivery_report", {"timezone": "Mars/Olympus"}, "timezone: not a known IANA time zone"),
        ("get_delivery_report", {"id": 1, "since": "2026-11-01"}, "either id (one session) or filter"),
        (
            "get_recipients",
            {"since": "2026-11-20", "until": "2026-11-01"},
            "until (2026-11-01) is before since (2026-11-20)",
        ),
        ("find_message_sessions", {"source": ["Z"]}, "source.0: Input should be 'O'"),
        ("find_message_sessions", {"sort": "best"}, "sort: Input should be 'newest'"),
        ("get_delivery_report", {"group_by": ["planet"]}, "group_by.0: 'planet' is not a group"),
        ("delete_message_sessions_matching", {}, "needs at least one of since, until, text"),
        ("delete_message_sessions_matching", {"timezone": "UTC"}, "needs at least one of since, until, text"),
        ("delete_message_sessions_matching", {"text": ""}, "text: String should have at least 1 character"),
    ],
)
async def test_bad_filters_are_refused_naming_the_argument(
    make_server: Any, emulator: Emulator, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    async with connect(make_server()) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error and expected in text_of(result)
    assert tm_requests(emulator) == [] and emulator.deleted_ids == []


async def test_the_reading_tools_start_from_the_anchor_day(make_server: Any, emulator: Emulator) -> None:
    # "Yesterday's reminder": one date, since and until alike.
    yesterday = (ANCHOR - timedelta(days=1)).date().isoformat()
    async with connect(make_server()) as client:
        found = await client.call_tool("find_message_sessions", {"since": yesterday, "until": yesterday})
    [session] = found.structured_content["sessions"]
    assert "reminder" in session["text"]
