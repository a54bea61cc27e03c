"""The store of settled sessions: follow-up questions answered from what cannot change any more, and never an
answer that differs from TextMagic's own data: sessions deleted since, sessions not settled, new sessions, and
deleted messages all come out as a direct reading says; the file on disk is the server's own or refused."""

from __future__ import annotations

import os
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.sandbox import Emulator
from server.state.settings import ConfigError, load_settings
from server.wiring.app import SessionsServer, build_server
from tests.helpers import (
    API_KEY,
    USERNAME,
    ServedEmulator,
    account_environment,
    add_session,
    connect,
    run_script,
    tm_requests,
)

# A week before the emulator's anchor (20 November 2026): eight small sessions, two of them not settled.
WINDOW = {"since": "2026-11-09", "until": "2026-11-15"}


def within(start: str) -> bool:
    return "2026-11-09" <= start[:10] <= "2026-11-15"


FINAL = set("defujg")


def build(url: str, **overrides: Any) -> SessionsServer:
    return build_server(
        load_settings(username=USERNAME, api_key=API_KEY, base_url=url, rate_limit=1000, **overrides)
    )


def answer(result: Any) -> dict[str, Any]:
    """What a call answered, less what says where it came from."""
    assert not result.is_error, result.content
    return {key: value for key, value in result.structured_content.items() if key != "memory"}


def message_reads(emulator: Emulator) -> list[str]:
    return [r.path for r in tm_requests(emulator) if r.path.endswith("/messages")]


QUESTIONS = [
    ("get_delivery_report", WINDOW),
    ("get_delivery_report", {**WINDOW, "group_by": ["country", "day"]}),
    ("get_delivery_report", {**WINDOW, "include_deleted": True, "group_by": ["sender+country"]}),
    ("get_recipients", {**WINDOW, "outcomes": ["failed", "rejected"], "limit": 1000}),
    ("get_recipients", {**WINDOW, "min_messages": 1, "limit": 1000}),
]
CHANGES = [
    "none",
    "delete_session",
    "new_settled",
    "new_pending",
    "settle_pending",
    "delete_a_pending_message",
]


def change(emulator: Emulator, kind: str, pick: int, serial: int) -> None:
    """What can happen at TextMagic between two questions: sessions deleted and sent, messages going final or
    deleted in sessions not settled yet. A settled message never changes."""
    sessions = emulator.data.sessions
    inside = sorted(i for i, s in sessions.items() if within(s["startTime"]))
    unsettled = [i for i in inside if any(m["status"] not in FINAL for m in emulator.data.messages[i])]
    moment = datetime(2026, 11, 10, tzinfo=UTC) + timedelta(minutes=pick)
    if kind == "delete_session" and inside:
        gone = inside[pick % len(inside)]
        del sessions[gone], emulator.data.messages[gone]
    elif kind == "new_settled":
        add_session(emulator, 49_500_000 + serial, moment, statuses="ddfjd")
    elif kind == "new_pending":
        add_session(emulator, 49_500_000 + serial, moment, statuses="dqrs")
    elif kind == "settle_pending" and unsettled:
        for message in emulator.data.messages[unsettled[pick % len(unsettled)]]:
            if message["status"] not in FINAL:
                message["status"] = "d" if pick % 3 else "f"
    elif kind == "delete_a_pending_message" and unsettled:
        messages = emulator.data.messages[unsettled[pick % len(unsettled)]]
        messages[pick % len(messages)]["deleted"] = True


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(st.integers(0, len(QUESTIONS) - 1), st.sampled_from(CHANGES), st.integers(0, 10_000)),
        min_size=2,
        max_size=6,
    )
)
def test_every_answer_from_memory_is_the_answer_from_textmagic(
    served: ServedEmulator, steps: list[tuple[int, str, int]]
) -> None:
    emulator = served.emulator
    emulator.reset()

    async def run() -> None:
        remembering, direct = build(served.url), build(served.url, cache_mb=0)
        async with connect(remembering) as stored, connect(direct) as fresh:
            for serial, (question, kind, pick) in enumerate(steps):
                change(emulator, kind, pick, serial)
                tool, arguments = QUESTIONS[question]
                kept = await stored.call_tool(tool, arguments)
                assert answer(kept) == answer(await fresh.call_tool(tool, arguments)), (tool, arguments, kind)

    anyio.run(run)


@pytest.mark.anyio
async def test_follow_ups_read_only_what_can_still_change(make_server: Any, emulator: Emulator) -> None:
    inside = {i: s for i, s in emulator.data.sessions.items() if within(s["startTime"])}
    unsettled = {i for i in inside if any(m["status"] not in FINAL for m in emulator.data.messages[i])}
    assert unsettled and len(unsettled) < len(inside)
    async with connect(make_server(fresh=True)) as client:
        first = await client.call_tool("get_delivery_report", WINDOW)
        read_first = len(message_reads(emulator))
        by_country = await client.call_tool("get_delivery_report", {**WINDOW, "group_by": ["country"]})
    follow_up = message_reads(emulator)[read_first:]
    assert "memory" not in first.structured_content
    memory = by_country.structured_content["memory"]
    assert memory["sessions"] == len(inside) - len(unsettled)
    assert datetime.fromisoformat(memory["read_at"]) <= datetime.now(UTC)
    # Only the sessions not settled were read again; the list of sessions, always.
    assert {int(path.split("/")[4]) for path in follow_up} == unsettled
    assert by_country.structured_content["outcome"] == first.structured_content["outcome"]


@pytest.mark.anyio
async def test_a_stored_session_deleted_since_is_never_counted(make_server: Any, emulator: Emulator) -> None:
    async with connect(make_server(fresh=True)) as client:
        before = (await client.call_tool("get_delivery_report", WINDOW)).structured_content
        settled = [
            i
            for i, s in emulator.data.sessions.items()
            if within(s["startTime"]) and all(m["status"] in FINAL for m in emulator.data.messages[i])
        ]
        gone = max(settled, key=lambda i: len(emulator.data.messages[i]))
        lost = len([m for m in emulator.data.messages[gone] if not m["deleted"]])
        del emulator.data.sessions[gone], emulator.data.messages[gone]
        after = (await client.call_tool("get_delivery_report", WINDOW)).structured_content
    assert after["messages"] == before["messages"] - lost and after["sessions"] == before["sessions"] - 1


@pytest.mark.anyio
async def test_the_store_on_disk_outlives_the_server(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    async with connect(build(served.url, cache_path=path)) as client:
        first = await client.call_tool("get_delivery_report", WINDOW)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    read_first = len(message_reads(emulator))
    # Another server, as a host launches a stdio server anew.
    async with connect(build(served.url, cache_path=path)) as client:
        again = await client.call_tool("get_delivery_report", WINDOW)
    assert answer(again) == answer(first) and again.structured_content["memory"]["sessions"] > 0
    reread = len(message_reads(emulator)) - read_first
    # An entry older than TEXTMAGIC_CACHE_MAX_AGE is read again.
    with sqlite3.connect(path) as db:
        db.execute("UPDATE entries SET read_at = read_at - 2 * 86400")
    db.close()
    async with connect(build(served.url, cache_path=path)) as client:
        aged = await client.call_tool("get_delivery_report", WINDOW)
    assert "memory" not in aged.structured_content and answer(aged) == answer(first)
    assert len(message_reads(emulator)) - read_first - reread == read_first


def test_a_file_that_is_not_the_store_is_refused(served: ServedEmulator, tmp_path: Path) -> None:
    spoilt = tmp_path / "spoilt.db"
    spoilt.write_bytes(b"not a database at all " * 100)
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    db.close()
    with pytest.raises(ConfigError, match="is not a readable SQLite file"):
        build(served.url, cache_path=spoilt)
    with pytest.raises(ConfigError, match="a SQLite file of something else"):
        build(served.url, cache_path=foreign)
    cleared = run_script("cache", "clear", env={"TEXTMAGIC_CACHE_PATH": str(foreign)})
    assert cleared.returncode == 2 and "is not this server's store" in cleared.stderr and foreign.exists()


def test_sync_fills_the_store_and_cache_clear_empties_it(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    path = tmp_path / "store.db"
    environment = account_environment(served, TEXTMAGIC_CACHE_PATH=str(path))
    synced = run_script("sync", "--since", "2026-11-09", "--until", "2026-11-15", env=environment)
    assert synced.returncode == 0, synced.stderr
    [line] = [line for line in synced.stderr.splitlines() if "server.sync" in line]
    assert "sessions in the store" in line and "not settled yet" in line
    read = len(message_reads(emulator))
    reported = run_script(
        "report", "--since", "2026-11-09", "--until", "2026-11-15", "--markdown", env=environment
    )
    settled_reads = len(message_reads(emulator)) - read
    fresh = run_script(
        "--fresh", "report", "--since", "2026-11-09", "--until", "2026-11-15", "--markdown", env=environment
    )
    assert reported.stdout == fresh.stdout and reported.returncode == fresh.returncode == 0
    assert len(message_reads(emulator)) - read - settled_reads > settled_reads
    cleared = run_script("cache", "clear", env={"TEXTMAGIC_CACHE_PATH": str(path)})
    assert cleared.returncode == 0 and not path.exists()
    unset = run_script("sync", "--since", "2026-11-09", env=account_environment(served))
    assert unset.returncode == 2 and "set TEXTMAGIC_CACHE_PATH" in unset.stderr


@pytest.mark.anyio
async def test_the_store_in_memory_keeps_to_its_bound(make_server: Any, emulator: Emulator) -> None:
    # One megabyte: the small sessions fit, the 5,200-recipient send-out does not.
    async with connect(make_server(cache_mb=1, fresh=True)) as client:
        await client.call_tool("get_delivery_report", {"since": "2026-11-15"})
        read = len(message_reads(emulator))
        again = await client.call_tool("get_delivery_report", {"since": "2026-11-15"})
    largest = max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))
    reread = {int(path.split("/")[4]) for path in message_reads(emulator)[read:]}
    assert largest in reread and again.structured_content["memory"]["sessions"] > 0


@pytest.mark.anyio
async def test_include_deleted_is_never_answered_from_the_wrong_reading(
    served: ServedEmulator, emulator: Emulator
) -> None:
    # A settled session with deleted messages: what is counted with and without them must differ, from memory too.
    settled = [
        i
        for i, s in emulator.data.sessions.items()
        if within(s["startTime"]) and all(m["status"] in FINAL for m in emulator.data.messages[i])
    ]
    with_deleted = max(settled, key=lambda i: len(emulator.data.messages[i]))
    emulator.data.messages[with_deleted][0]["deleted"] = True
    asked = {"id": with_deleted}
    async with connect(build(served.url)) as stored, connect(build(served.url, cache_mb=0)) as direct:
        for arguments in (asked, {**asked, "include_deleted": True}, asked):
            kept = await stored.call_tool("get_delivery_report", arguments)
            assert answer(kept) == answer(await direct.call_tool("get_delivery_report", arguments))
        recipients = await stored.call_tool("get_recipients", {**asked, "limit": 1000})
        assert answer(recipients) == answer(
            await direct.call_tool("get_recipients", {**asked, "limit": 1000})
        )
    assert "memory" in kept.structured_content and "memory" in recipients.structured_content
    gone = emulator.data.messages[with_deleted][0]["receiver"]
    assert gone not in {row["number"] for row in recipients.structured_content["recipients"]}
