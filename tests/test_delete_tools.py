"""The delete tools: nothing goes without a preview and a confirming call carrying that preview's token."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from server.sandbox import Emulator
from server.state.confirmation import Confirmations, Target
from tests.helpers import add_session, connect, deletions, newest, text_of

pytestmark = pytest.mark.anyio

SECRET = "shared-confirmation-secret-for-tests-0123"


async def test_single_delete_previews_then_deletes(make_server: Any, emulator: Emulator, era: str) -> None:
    [session_id] = newest(emulator, 1)
    session = emulator.data.sessions[session_id]
    async with connect(make_server(), era) as client:
        preview = await client.call_tool("delete_message_session", {"id": session_id})
        assert not preview.is_error, text_of(preview)
        result = preview.structured_content
        assert result["deleted"] is False
        assert result["preview"]["ids"] == [session_id]
        [shown] = result["preview"]["sessions"]
        assert shown["id"] == session_id and shown["recipients"] == session["numbersCount"]
        assert shown["start_time"] == session["startTime"]
        text = session["text"]
        assert shown["title"] == (session["title"] or (text if len(text) <= 40 else text[:39] + "…"))
        assert result["preview"]["price"] == session["price"]
        assert result["confirmation_token"] and result["expires_at"]
        assert "confirm=true" in result["message"]
        assert session_id in emulator.data.sessions and deletions(emulator) == []

        done = await client.call_tool(
            "delete_message_session",
            {"id": session_id, "confirm": True, "confirmation_token": result["confirmation_token"]},
        )
    assert not done.is_error, text_of(done)
    assert done.structured_content["deleted"] is True
    assert done.structured_content["deleted_ids"] == [session_id]
    assert deletions(emulator) == [("DELETE", f"/api/v2/sessions/{session_id}", None)]
    assert emulator.deleted_ids == [session_id]


@pytest.mark.parametrize(
    "arguments",
    [
        {"confirm": True},
        {"confirm": True, "confirmation_token": ""},
        {"confirm": True, "confirmation_token": "v1.bogus.token"},
        {"confirm": True, "confirmation_token": "no dots at all"},
        {"confirm": True, "confirmation_token": "v1.ü.ß"},
    ],
)
async def test_single_delete_refuses_without_a_valid_token(
    make_server: Any, emulator: Emulator, arguments: dict[str, Any]
) -> None:
    [session_id] = newest(emulator, 1)
    async with connect(make_server(), "modern") as client:
        result = await client.call_tool("delete_message_session", {"id": session_id, **arguments})
    assert result.is_error
    assert "Call again without confirm" in text_of(result)
    assert deletions(emulator) == [] and emulator.deleted_ids == []


async def test_token_is_bound_to_tool_and_ids(make_server: Any, emulator: Emulator, era: str) -> None:
    first, second = newest(emulator, 2)
    async with connect(make_server(), era) as client:
        single = await client.call_tool("delete_message_session", {"id": first})
        token = single.structured_content["confirmation_token"]
        other_id = await client.call_tool(
            "delete_message_session", {"id": second, "confirm": True, "confirmation_token": token}
        )
        other_tool = await client.call_tool(
            "delete_message_sessions_bulk", {"ids": [first], "confirm": True, "confirmation_token": token}
        )
        tampered = await client.call_tool(
            "delete_message_session", {"id": first, "confirm": True, "confirmation_token": token[:-2] + "xx"}
        )
    assert other_id.is_error and "different set of session ids" in text_of(other_id)
    assert other_tool.is_error and "issued for delete_message_session" in text_of(other_tool)
    assert tampered.is_error and "not issued by this server" in text_of(tampered)
    assert deletions(emulator) == [] and emulator.deleted_ids == []


async def test_bulk_delete_exactly_what_was_previewed(make_server: Any, emulator: Emulator, era: str) -> None:
    a, b, c = newest(emulator, 3)
    missing = 999
    async with connect(make_server(), era) as client:
        preview = await client.call_tool("delete_message_sessions_bulk", {"ids": [c, a, missing, b, a]})
        result = preview.structured_content
        assert result["deleted"] is False
        assert result["not_found_ids"] == [missing]
        assert sorted(result["preview"]["ids"]) == sorted([a, b, c])
        sessions = [emulator.data.sessions[i] for i in (a, b, c)]
        assert result["preview"]["recipients"] == sum(s["numbersCount"] for s in sessions)
        assert result["preview"]["price"] == pytest.approx(sum(s["price"] for s in sessions))
        token = result["confirmation_token"]

        subset = await client.call_tool(
            "delete_message_sessions_bulk", {"ids": [a, b], "confirm": True, "confirmation_token": token}
        )
        superset = await client.call_tool(
            "delete_message_sessions_bulk",
            {"ids": [a, b, c, missing], "confirm": True, "confirmation_token": token},
        )
        assert subset.is_error and superset.is_error
        assert emulator.deleted_ids == []

        # Order and duplicates do not matter.
        done = await client.call_tool(
            "delete_message_sessions_bulk",
            {"ids": [b, c, a, c], "confirm": True, "confirmation_token": token},
        )
    assert not done.is_error, text_of(done)
    assert done.structured_content["deleted_ids"] == sorted([a, b, c])
    ids_sent = ",".join(str(i) for i in sorted([a, b, c]))
    assert deletions(emulator) == [("POST", "/api/v2/sessions/delete", {"ids": ids_sent, "all": 0})]
    assert sorted(emulator.deleted_ids) == sorted([a, b, c])


async def test_bulk_preview_of_only_missing_ids_gives_no_token(make_server: Any, emulator: Emulator) -> None:
    async with connect(make_server(), "modern") as client:
        result = await client.call_tool("delete_message_sessions_bulk", {"ids": [5, 6]})
    assert not result.is_error
    assert "confirmation_token" not in result.structured_content
    assert result.structured_content["not_found_ids"] == [5, 6]
    assert "Nothing to delete" in result.structured_content["message"]


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"ids": [1], "all": True}, "either ids or all=true, not both"),
        ({}, "Pass ids"),
        ({"all": False}, "Pass ids"),
        ({"all": True}, "TEXTMAGIC_ALLOW_DELETE_ALL=true"),
        ({"all": True, "confirm": True, "confirmation_token": "x"}, "TEXTMAGIC_ALLOW_DELETE_ALL=true"),
    ],
)
async def test_bulk_refusals(
    make_server: Any, emulator: Emulator, arguments: dict[str, Any], expected: str
) -> None:
    async with connect(make_server(), "modern") as client:
        result = await client.call_tool("delete_message_sessions_bulk", arguments)
    assert result.is_error
    assert expected in text_of(result)
    assert deletions(emulator) == [] and emulator.deleted_ids == []


async def test_delete_all_when_allowed(make_server: Any, emulator: Emulator, era: str) -> None:
    ids = sorted(emulator.data.sessions, reverse=True)
    async with connect(make_server(allow_delete_all=True), era) as client:
        preview = await client.call_tool("delete_message_sessions_bulk", {"all": True})
        assert preview.structured_content["preview"]["count"] == len(ids)
        assert f"ALL {len(ids)} sessions" in preview.structured_content["message"]
        assert len(emulator.data.sessions) == len(ids)
        done = await client.call_tool(
            "delete_message_sessions_bulk",
            {
                "all": True,
                "confirm": True,
                "confirmation_token": preview.structured_content["confirmation_token"],
            },
        )
    assert done.structured_content["deleted"] is True and done.structured_content["deleted_all"] is True
    # By ids, never all=1: what the preview showed and nothing else.
    assert deletions(emulator) == [
        ("POST", "/api/v2/sessions/delete", {"ids": ",".join(map(str, ids)), "all": 0})
    ]
    assert emulator.data.sessions == {}


async def test_delete_all_leaves_a_session_created_after_its_preview(
    make_server: Any, emulator: Emulator
) -> None:
    """Finding 1: the token of `all` was bound to the number of sessions: one gone and one new, and it deleted the
    new one."""
    oldest = min(emulator.data.sessions)
    async with connect(make_server(allow_delete_all=True), "modern") as client:
        preview = await client.call_tool("delete_message_sessions_bulk", {"all": True})
        token = preview.structured_content["confirmation_token"]
        # One session goes, another send-out arrives: the same number of sessions as at the preview.
        del emulator.data.sessions[oldest], emulator.data.messages[oldest]
        [newcomer] = [add_session(emulator, 48_900_000, datetime.now(UTC), title="Arrived later")["id"]]
        done = await client.call_tool(
            "delete_message_sessions_bulk", {"all": True, "confirm": True, "confirmation_token": token}
        )
        replay = await client.call_tool(
            "delete_message_sessions_bulk", {"all": True, "confirm": True, "confirmation_token": token}
        )
    result = done.structured_content
    assert newcomer in emulator.data.sessions and list(emulator.data.sessions) == [newcomer]
    assert (
        result["deleted"] is True and result["deleted_all"] is False and result["not_found_ids"] == [oldest]
    )
    assert "left alone" in result["message"]
    assert replay.is_error and "used already" in text_of(replay) and newcomer in emulator.data.sessions


async def test_expired_token_is_refused(make_server: Any, emulator: Emulator) -> None:
    [session_id] = newest(emulator, 1)
    # Signed with the server's own secret, but issued 700 s ago with the default 600 s lifetime.
    past = Confirmations(SECRET.encode(), ttl_seconds=600, clock=lambda: time.time() - 700)
    token = past.issue("delete_message_session", Target.of_ids([session_id])).token
    async with connect(make_server(confirmation_secret=SECRET), "modern") as client:
        result = await client.call_tool(
            "delete_message_session", {"id": session_id, "confirm": True, "confirmation_token": token}
        )
    assert result.is_error and "expired" in text_of(result)
    assert emulator.deleted_ids == []


async def test_a_token_works_on_another_server_with_the_same_secret(
    make_server: Any, emulator: Emulator
) -> None:
    first, second = newest(emulator, 2)
    async with connect(make_server(confirmation_secret=SECRET), "modern") as one:
        token_1 = (await one.call_tool("delete_message_session", {"id": first})).structured_content[
            "confirmation_token"
        ]
        token_2 = (await one.call_tool("delete_message_session", {"id": second})).structured_content[
            "confirmation_token"
        ]
    async with connect(
        make_server(confirmation_secret="another-secret-0123456789abcdef-xyz"), "modern"
    ) as stranger:
        refused = await stranger.call_tool(
            "delete_message_session", {"id": second, "confirm": True, "confirmation_token": token_2}
        )
    async with connect(make_server(confirmation_secret=SECRET), "legacy") as two:
        accepted = await two.call_tool(
            "delete_message_session", {"id": first, "confirm": True, "confirmation_token": token_1}
        )
    assert refused.is_error and "not issued by this server" in text_of(refused)
    assert accepted.structured_content["deleted"] is True
    assert emulator.deleted_ids == [first]


async def test_confirmed_delete_of_a_vanished_session_is_reported(
    make_server: Any, emulator: Emulator
) -> None:
    [session_id] = newest(emulator, 1)
    async with connect(make_server(), "modern") as client:
        token = (await client.call_tool("delete_message_session", {"id": session_id})).structured_content[
            "confirmation_token"
        ]
        del emulator.data.sessions[session_id]
        result = await client.call_tool(
            "delete_message_session", {"id": session_id, "confirm": True, "confirmation_token": token}
        )
    assert not result.is_error
    assert result.structured_content["deleted"] is False
    assert result.structured_content["not_found_ids"] == [session_id]


async def test_bulk_confirmation_reports_sessions_that_vanished(make_server: Any, emulator: Emulator) -> None:
    kept, vanished = newest(emulator, 2)
    async with connect(make_server(), "modern") as client:
        preview = await client.call_tool("delete_message_sessions_bulk", {"ids": [kept, vanished]})
        token = preview.structured_content["confirmation_token"]
        del emulator.data.sessions[vanished]
        done = await client.call_tool(
            "delete_message_sessions_bulk",
            {"ids": [kept, vanished], "confirm": True, "confirmation_token": token},
        )
    assert done.structured_content["deleted"] is True
    assert done.structured_content["deleted_ids"] == [kept]
    assert done.structured_content["not_found_ids"] == [vanished]
    assert f"Already gone: {vanished}" in done.structured_content["message"]
    assert deletions(emulator) == [("POST", "/api/v2/sessions/delete", {"ids": str(kept), "all": 0})]
