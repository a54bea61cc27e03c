"""Answers that add up, checked against the emulator's raw data: one number's history in any spelling, repeats,
cost as billed (deleted messages included), sessions not started kept apart, tables by hour, weekday, source
and pairs that sum to the totals, and texts that say no more than they should."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.sandbox import Emulator
from tests.helpers import add_session, connect, outcome_of, text_of, tm_requests

pytestmark = pytest.mark.anyio

# Every session up to the day before the emulator's anchor (20 November 2026).
PERIOD = {"since": "2026-10-01", "until": "2026-11-19"}
FINAL = ("delivered", "failed", "rejected", "pending", "other")


def in_period(emulator: Emulator) -> list[int]:
    return [
        i for i, s in emulator.data.sessions.items() if "2026-10-01" <= s["startTime"][:10] <= "2026-11-19"
    ]


def messages_to(emulator: Emulator, number: str) -> list[dict[str, Any]]:
    return sorted(
        (
            m
            for ms in emulator.data.messages.values()
            for m in ms
            if m["receiver"] == number and not m["deleted"]
        ),
        key=lambda m: m["messageTime"],
    )


def a_number_that_always_failed(emulator: Emulator) -> str:
    """A number every message to which failed, three times or more (the seed has several)."""
    sent: dict[str, list[str]] = defaultdict(list)
    for messages in emulator.data.messages.values():
        for m in messages:
            if not m["deleted"]:
                sent[m["receiver"]].append(outcome_of(m["status"]))
    return next(
        n for n, outcomes in sorted(sent.items()) if len(outcomes) >= 3 and set(outcomes) == {"failed"}
    )


async def test_a_numbers_history_in_any_of_its_spellings(make_server: Any, emulator: Emulator) -> None:
    number = a_number_that_always_failed(emulator)
    spaced = f"+{number[:2]} {number[2:6]} {number[6:]}"
    dashed = f"00{number[:2]}-{number[2:6]}-{number[6:]}"
    async with connect(make_server()) as client:
        answers = [
            (
                await client.call_tool("get_recipients", {"numbers": [spelling, "+1 202 555 0199"]})
            ).structured_content
            for spelling in (spaced, dashed, number)
        ]
    # The same answer each time (the later ones from the store of settled sessions, which they say).
    same = [{k: v for k, v in a.items() if k != "memory"} for a in answers]
    assert same[0] == same[1] == same[2] and "memory" in answers[2]
    [row] = answers[0]["recipients"]
    sent = messages_to(emulator, number)
    assert row["number"] == number and row["messages"] == len(sent) == row["failed"] >= 3
    assert row["delivered"] == row["rejected"] == row["pending"] == 0
    assert row["last_status"] == sent[-1]["status"] and row["last_time"] == sent[-1]["messageTime"]
    assert [(h["time"], h["session"], h["status"]) for h in row["history"]] == [
        (m["messageTime"], m["sessionId"], m["status"]) for m in sent
    ]
    sessions = emulator.data.sessions
    assert all(h["title"] == (sessions[h["session"]]["title"] or h["title"]) for h in row["history"])
    assert answers[0]["not_found"] == ["12025550199"]


@pytest.mark.parametrize(
    ("spelling", "said"),
    [
        ("+44 (0)7949 715839", "the (0) is not guessed away"),
        ("07949 715839", "is a national number"),
        ("call me maybe", "is not understood as a phone number"),
    ],
)
async def test_a_number_not_understood_is_said_so(
    make_server: Any, emulator: Emulator, spelling: str, said: str
) -> None:
    async with connect(make_server()) as client:
        result = await client.call_tool("get_recipients", {"numbers": ["+44 7949 715839", spelling]})
    assert result.is_error and "numbers.1" in text_of(result) and said in text_of(result)
    assert "+44 7949 715839 or 0044 7949 715839" in text_of(result)
    assert tm_requests(emulator) == []


async def test_who_got_a_send_out_twice(make_server: Any, emulator: Emulator) -> None:
    sales = [i for i, s in emulator.data.sessions.items() if s["title"] == "Weekend flash sale"]
    started = [i for i in sales if emulator.data.sessions[i]["startTime"] < "2026-11-20"]
    got = Counter(m["receiver"] for i in started for m in emulator.data.messages[i] if not m["deleted"])
    twice = {number for number, times in got.items() if times >= 2}
    async with connect(make_server()) as client:
        result = await client.call_tool("get_recipients", {"text": "flash sale", "min_messages": 2})
    rows = result.structured_content["recipients"]
    assert twice and {row["number"] for row in rows} == twice
    assert all(row["messages"] == got[row["number"]] and len(row["sessions"]) >= 2 for row in rows)


async def test_cost_is_what_textmagic_billed(make_server: Any, emulator: Emulator) -> None:
    inside = in_period(emulator)
    billed = sum(emulator.data.sessions[i]["price"] for i in inside)
    everything = [m for i in inside for m in emulator.data.messages[i]]
    gone = [m for m in everything if m["deleted"]]
    async with connect(make_server()) as client:
        report = await client.call_tool("get_delivery_report", {**PERIOD, "group_by": ["country"]})
        found = await client.call_tool("find_message_sessions", {**PERIOD, "limit": 100})
    result = report.structured_content
    assert result["outcome"]["cost"] == pytest.approx(billed)
    assert found.structured_content["price"] == pytest.approx(billed)
    assert sum(row["cost"] for row in result["groups"]["country"]) == pytest.approx(billed)
    # The counts are of the messages still listed; the deleted ones are named apart, with their cost.
    assert result["messages"] == len(everything) - len(gone)
    assert result["deleted"] == {"messages": len(gone), "cost": pytest.approx(sum(m["price"] for m in gone))}


async def test_a_session_not_started_is_kept_apart(make_server: Any, emulator: Emulator) -> None:
    ahead = datetime.now(UTC) + timedelta(days=2)
    later = add_session(emulator, 49_400_001, ahead, title="Next week's reminder", statuses="sss")
    since = {"since": "2026-11-18"}
    # Every other session since then has started, the seed's "tomorrow" too (the seed's anchor is past).
    started = [
        i
        for i, s in emulator.data.sessions.items()
        if s["startTime"][:10] >= "2026-11-18" and i != 49_400_001
    ]
    pending = sum(
        outcome_of(m["status"]) == "pending"
        for i in started
        for m in emulator.data.messages[i]
        if not m["deleted"]
    )
    async with connect(make_server()) as client:
        report = (await client.call_tool("get_delivery_report", since)).structured_content
        found = (await client.call_tool("find_message_sessions", {**since, "limit": 100})).structured_content
    assert report["scheduled"] == {"sessions": 1, "recipients": 3, "cost": pytest.approx(later["price"])}
    assert report["outcome"]["pending"] == pending and report["sessions"] == len(started)
    assert report["outcome"]["cost"] == pytest.approx(
        sum(emulator.data.sessions[i]["price"] for i in started)
    )
    [marked] = [s for s in found["sessions"] if s.get("scheduled")]
    assert marked["id"] == 49_400_001 and found["scheduled"] == 1
    assert found["price"] == pytest.approx(sum(emulator.data.sessions[i]["price"] for i in started))


async def test_tables_by_hour_weekday_source_and_pairs_add_up(make_server: Any, emulator: Emulator) -> None:
    zone = ZoneInfo("Europe/Berlin")
    groups = ["hour", "weekday", "source", "destination", "sender+country"]
    async with connect(make_server()) as client:
        report = (
            await client.call_tool(
                "get_delivery_report", {**PERIOD, "timezone": "Europe/Berlin", "group_by": groups}
            )
        ).structured_content
    total = report["outcome"]
    for name in groups:
        rows = report["groups"][name]
        for bucket in FINAL:
            assert sum(row[bucket] for row in rows) == total[bucket], (name, bucket)
        assert sum(row["cost"] for row in rows) == pytest.approx(total["cost"])
    sessions = emulator.data.sessions
    live = [
        (sessions[i], m) for i in in_period(emulator) for m in emulator.data.messages[i] if not m["deleted"]
    ]

    def local(m: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(m["messageTime"]).astimezone(zone)

    expected = {
        "hour": Counter(f"{local(m).hour:02d}" for _, m in live),
        "weekday": Counter(local(m).strftime("%a") for _, m in live),
        "source": Counter(s["source"] for s, _ in live),
        "sender+country": Counter(f"{m['sender']} / {m['country']}" for _, m in live),
    }
    for name, counts in expected.items():
        assert {
            row["key"]: row["delivered"] + row["failed"] + row["rejected"] + row["pending"] + row["other"]
            for row in report["groups"][name]
        } == dict(counts)
    assert [row["key"] for row in report["groups"]["hour"]] == sorted(expected["hour"])
    week = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert [row["key"] for row in report["groups"]["weekday"]] == [
        d for d in week if d in expected["weekday"]
    ]


async def test_sessions_are_named_in_their_rows_and_listed_when_few(
    make_server: Any, emulator: Emulator
) -> None:
    day = {"since": "2026-11-18", "until": "2026-11-19"}
    chosen = sorted(
        (i for i, s in emulator.data.sessions.items() if "2026-11-18" <= s["startTime"][:10] <= "2026-11-19"),
    )
    async with connect(make_server()) as client:
        report = (
            await client.call_tool("get_delivery_report", {**day, "group_by": ["session"]})
        ).structured_content
        wide = (await client.call_tool("get_delivery_report", PERIOD)).structured_content
    assert 1 <= len(chosen) <= 10
    lines = {line["id"]: line for line in report["listed"]}
    assert sorted(lines) == chosen and wide["listed"] == [] and wide["sessions"] > 10
    for row in report["groups"]["session"]:
        session = emulator.data.sessions[int(row["key"])]
        line = lines[int(row["key"])]
        assert row["start_time"] == line["start_time"] == session["startTime"]
        assert row["recipients"] == line["recipients"] == session["numbersCount"]
        assert row["title"] == line["title"] and line["title"].startswith(
            (session["title"] or session["text"])[:20]
        )


async def test_texts_say_what_was_asked_and_no_more(make_server: Any, emulator: Emulator) -> None:
    def failures_of(session_id: int) -> int:
        messages = emulator.data.messages[session_id]
        return sum(outcome_of(m["status"]) in ("failed", "rejected") for m in messages if not m["deleted"])

    # The session with the most failures that one report can list (500 at most).
    failing = max((i for i in emulator.data.messages if failures_of(i) <= 500), key=failures_of)
    failures = failures_of(failing)
    async with connect(make_server()) as client:
        none = (
            await client.call_tool("get_delivery_report", {"id": failing, "failed_limit": 0})
        ).structured_content
        one_short = await client.call_tool(
            "get_delivery_report", {"id": failing, "failed_limit": failures - 1}
        )
        reasons = (
            await client.call_tool("get_delivery_report", {"id": failing, "group_by": ["reject_reason"]})
        ).structured_content
        instructions = client.instructions or ""
    assert "more" not in none and none["failed"] == []
    assert one_short.structured_content["more"].startswith("1 more failed message: call get_recipients")
    assert [row["key"] for row in reasons["groups"]["reject_reason"] if row.get("key")]
    assert reasons["note"] == "Reject reason codes are TextMagic's; it does not document what they mean."
    assert "u means the status is unknown for good" in instructions and "get_recipients" in instructions
