"""delete_message_sessions_matching: the confirmation deletes exactly what its preview showed, in chunks of 100,
with the bulk delete's care for uncertain outcomes; the switches, the person and the audit apply as to every
delete."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from server.sandbox import Emulator
from tests.helpers import User, add_session, connect, deletions, sent, text_of, tm_requests

pytestmark = pytest.mark.anyio

MATCHING = "delete_message_sessions_matching"
TESTS = {"text": "smoke test"}


def smoke_tests(emulator: Emulator, count: int, first_id: int = 48_400_000) -> list[int]:
    """``count`` sessions titled "Smoke test" on 18 November, newest id last."""
    start = datetime(2026, 11, 18, 8, tzinfo=UTC)
    return [
        add_session(emulator, first_id + n, start + timedelta(minutes=n), title="Smoke test")["id"]
        for n in range(count)
    ]


async def preview_of(client: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    preview = await client.call_tool(MATCHING, arguments)
    assert not preview.is_error, text_of(preview)
    result: dict[str, Any] = preview.structured_content
    return result


def confirming(arguments: dict[str, Any], preview: dict[str, Any]) -> dict[str, Any]:
    return {**arguments, "confirm": True, "confirmation_token": preview["confirmation_token"]}


async def test_preview_then_delete_exactly_those(make_server: Any, emulator: Emulator, era: str) -> None:
    ids = smoke_tests(emulator, 3)
    async with connect(make_server(), era) as client:
        preview = await preview_of(client, TESTS)
        assert preview["deleted"] is False and emulator.deleted_ids == []
        assert preview["preview"]["count"] == 3 and preview["preview"]["recipients"] == 3
        assert sorted(s["id"] for s in preview["preview"]["sessions"]) == ids
        assert "smoke test" in preview["preview"]["filter"] and "confirm=true" in preview["message"]
        done = await client.call_tool(MATCHING, confirming(TESTS, preview))
    result = done.structured_content
    assert result["deleted"] is True and result["deleted_count"] == 3 and sorted(result["deleted_ids"]) == ids
    assert sorted(emulator.deleted_ids) == ids
    assert deletions(emulator) == [
        ("POST", "/api/v2/sessions/delete", {"ids": ",".join(map(str, sorted(ids, reverse=True))), "all": 0})
    ]


async def test_what_came_after_the_preview_survives_and_what_went_is_reported(
    make_server: Any, emulator: Emulator
) -> None:
    first, second, third = smoke_tests(emulator, 3)
    async with connect(make_server()) as client:
        preview = await preview_of(client, TESTS)
        # Meanwhile one previewed session goes, and a new one that matches arrives.
        del emulator.data.sessions[second], emulator.data.messages[second]
        [newcomer] = smoke_tests(emulator, 1, first_id=48_500_000)
        done = await client.call_tool(MATCHING, confirming(TESTS, preview))
    result = done.structured_content
    assert sorted(result["deleted_ids"]) == [first, third] and result["not_found_ids"] == [second]
    assert newcomer in emulator.data.sessions and sorted(emulator.deleted_ids) == [first, third]
    assert "1 sessions that match now but were not previewed were left alone" in result["message"]


async def test_deletes_go_in_chunks_of_100_and_an_uncertain_chunk_is_checked_not_resent(
    make_server: Any, emulator: Emulator
) -> None:
    ids = smoke_tests(emulator, 230)
    async with connect(make_server(timeout=0.5)) as client:
        preview = await preview_of(client, TESTS)
        assert preview["preview"]["count"] == 230 and len(preview["preview"]["sessions"]) == 20
        # The first chunk is carried out, then the connection drops before TextMagic's answer.
        emulator.fail_next(reset=True, method="POST", carry_out=True)
        done = await client.call_tool(MATCHING, confirming(TESTS, preview))
    result = done.structured_content
    chunks = [body["ids"].split(",") for _, _, body in deletions(emulator)]
    assert [len(chunk) for chunk in chunks] == [100, 100, 30], "each chunk sent once, the uncertain one too"
    assert result["deleted"] is True and result["deleted_count"] == 230 and len(result["deleted_ids"]) == 100
    assert sorted(emulator.deleted_ids) == ids and result["uncertain_ids"] == []
    # Looking the uncertain chunk up took a request per session of it.
    assert sum(1 for r in tm_requests(emulator) if r.method == "GET" and "/sessions/484" in r.path) == 100


async def test_a_chunk_whose_check_fails_stops_the_rest(make_server: Any, emulator: Emulator) -> None:
    ids = smoke_tests(emulator, 150)
    async with connect(make_server(timeout=0.5, retry_attempts=1)) as client:
        preview = await preview_of(client, TESTS)
        emulator.fail_next(503, method="POST")
        # TextMagic stays down for the look-ups that would tell what the failed delete did.
        for session_id in ids:
            emulator.fail_next(503, method="GET", path=f"/api/v2/sessions/{session_id}")
        done = await client.call_tool(MATCHING, confirming(TESTS, preview))
    result = done.structured_content
    assert result["deleted"] is False and len(result["uncertain_ids"]) == 100
    assert sent(emulator, "POST") == 1 and "nothing more was sent" in result["message"]
    assert "get_message_session" in result["message"]


async def test_a_token_works_only_for_its_filter(make_server: Any, emulator: Emulator) -> None:
    smoke_tests(emulator, 2)
    async with connect(make_server()) as client:
        preview = await preview_of(client, TESTS)
        wider = await client.call_tool(MATCHING, confirming({"text": "test"}, preview))
        bulk = await client.call_tool(
            "delete_message_sessions_bulk",
            {"ids": [48_400_000], "confirm": True, "confirmation_token": preview["confirmation_token"]},
        )
    assert wider.is_error and "different filter" in text_of(wider)
    assert bulk.is_error and "issued for delete_message_sessions_matching" in text_of(bulk)
    assert emulator.deleted_ids == []


async def test_a_preview_this_server_does_not_know_deletes_nothing(
    make_server: Any, emulator: Emulator
) -> None:
    smoke_tests(emulator, 2)
    secret = "shared-secret-for-two-servers-0123456789"
    async with connect(make_server(confirmation_secret=secret)) as one:
        preview = await preview_of(one, TESTS)
    # Another process with the same secret: the token is genuine, but neither its record of used confirmations
    # nor the previewed set is there.
    async with connect(make_server(confirmation_secret=secret, confirmation_ttl=601)) as other:
        done = await other.call_tool(MATCHING, confirming(TESTS, preview))
    assert done.is_error and "cannot be known to be unused" in text_of(done)
    assert emulator.deleted_ids == []


async def test_the_person_sees_the_filter_and_may_decline(
    make_server: Any, emulator: Emulator, era: str
) -> None:
    smoke_tests(emulator, 2)
    user = User("decline")
    async with connect(make_server(), era, elicitation_callback=user) as client:
        preview = await preview_of(client, TESTS)
        done = await client.call_tool(MATCHING, confirming(TESTS, preview))
    [question] = user.questions
    assert question.startswith("Delete 2 sessions") and "smoke test" in question
    assert done.structured_content["deleted"] is False and emulator.deleted_ids == []


async def test_switches_and_audit_apply(make_server: Any, emulator: Emulator, tmp_path: Path) -> None:
    smoke_tests(emulator, 2)
    audit = tmp_path / "audit.jsonl"
    async with connect(make_server(read_only=True, audit_log=str(audit))) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        refused = await client.call_tool(MATCHING, TESTS)
    async with connect(make_server(require_human_confirmation=True)) as client:
        unasked = await client.call_tool(MATCHING, TESTS)
    assert MATCHING not in names and refused.is_error and "read-only" in text_of(refused)
    assert unasked.is_error and "TEXTMAGIC_REQUIRE_HUMAN_CONFIRMATION" in text_of(unasked)
    [record] = [json.loads(line) for line in audit.read_text().splitlines()]
    assert (record["tool"], record["outcome"]) == (MATCHING, "refused")
    assert tm_requests(emulator) == []


async def test_every_step_is_audited(make_server: Any, emulator: Emulator, tmp_path: Path) -> None:
    ids = smoke_tests(emulator, 2)
    audit = tmp_path / "audit.jsonl"
    async with connect(make_server(audit_log=str(audit))) as client:
        await client.call_tool(MATCHING, {})
        preview = await preview_of(client, TESTS)
        await client.call_tool(MATCHING, confirming(TESTS, preview))
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["outcome"], r.get("ids")) for r in records] == [
        ("refused", []),
        ("preview", sorted(ids)),
        ("sending", sorted(ids)),
        ("deleted", sorted(ids)),
    ]
    assert all("filter" in r.get("detail", "filter") for r in records[1:])
