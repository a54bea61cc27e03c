"""The four read tools through the SDK's Client, on both protocol eras, against the emulator over HTTP."""

from __future__ import annotations

import json
import math
from typing import Any

import jsonschema
import pytest

from server.sandbox import Emulator
from server.sandbox.seed import STAT_BUCKETS
from tests.helpers import USERNAME, connect, text_of, tm_requests
from tests.table import present

pytestmark = pytest.mark.anyio


def newest_ids(emulator: Emulator) -> list[int]:
    return sorted(emulator.data.sessions, reverse=True)


async def call(make_server: Any, era: str, tool: str, arguments: dict[str, Any], **settings: Any) -> Any:
    async with connect(make_server(**settings), era) as client:
        listing = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result)
    # Every result conforms to the tool's published outputSchema.
    jsonschema.validate(result.structured_content, listing[tool].output_schema)
    return result


async def test_list_sessions_defaults(make_server: Any, emulator: Emulator, era: str) -> None:
    result = await call(make_server, era, "get_all_message_sessions", {})
    page = result.structured_content
    total = len(emulator.data.sessions)
    assert (page["page"], page["limit"], page["pageCount"]) == (1, 10, math.ceil(total / 10))
    assert [s["id"] for s in page["resources"]] == newest_ids(emulator)[:10]
    first = page["resources"][0]
    assert first == present(emulator.data.sessions[first["id"]])
    [request] = tm_requests(emulator)
    assert (request.method, request.path, request.query) == (
        "GET",
        "/api/v2/sessions",
        {"page": "1", "limit": "10"},
    )
    assert (request.auth_scheme, request.username, request.authorized) == ("basic", USERNAME, True)
    assert request.user_agent and request.user_agent.startswith("textmagic-sessions-mcp/")


async def test_list_sessions_last_page_at_limit_100(make_server: Any, emulator: Emulator, era: str) -> None:
    result = await call(make_server, era, "get_all_message_sessions", {"page": 1, "limit": 100})
    page = result.structured_content
    assert page["pageCount"] == 1
    assert len(page["resources"]) == len(emulator.data.sessions)
    beyond = await call(make_server, era, "get_all_message_sessions", {"page": 2, "limit": 100})
    assert beyond.structured_content["resources"] == []


async def test_get_session_is_exact(make_server: Any, emulator: Emulator, era: str) -> None:
    session_id = newest_ids(emulator)[5]
    result = await call(make_server, era, "get_message_session", {"id": session_id})
    assert result.structured_content == present(emulator.data.sessions[session_id])
    assert [(r.method, r.path) for r in tm_requests(emulator)] == [("GET", f"/api/v2/sessions/{session_id}")]


async def test_text_is_compact_and_lossless(make_server: Any, emulator: Emulator, era: str) -> None:
    session_id = newest_ids(emulator)[0]
    emulator.data.sessions[session_id]["referenceId"] = None
    result = await call(make_server, era, "get_message_session", {"id": session_id})
    rendered = json.loads(text_of(result))
    assert "referenceId" not in rendered
    assert rendered == {k: v for k, v in result.structured_content.items() if v is not None}
    assert "\n" not in text_of(result)


async def test_unknown_fields_pass_through_and_nulls_are_left_out(
    make_server: Any, emulator: Emulator, era: str
) -> None:
    session_id = newest_ids(emulator)[0]
    session = emulator.data.sessions[session_id]
    session.update({"text": None, "price": None, "destination": None, "addedLater": {"x": [1, 2]}})
    result = await call(make_server, era, "get_message_session", {"id": session_id})
    assert result.structured_content["addedLater"] == {"x": [1, 2]}
    # Nulls are left out: absent says the same in fewer tokens, and fits a schema of one type per field.
    assert {"text", "price", "destination"}.isdisjoint(result.structured_content)


def expected_stat(emulator: Emulator, session_id: int, include_deleted: bool) -> dict[str, int]:
    counts = dict.fromkeys(("all", "delivered", "failed", "rejected", "accepted", "sent", "scheduled"), 0)
    for message in emulator.data.messages[session_id]:
        if include_deleted or not message["deleted"]:
            counts["all"] += 1
            counts[STAT_BUCKETS[message["status"]]] += 1
    return counts


async def test_stat(make_server: Any, emulator: Emulator, era: str) -> None:
    # The session with the most deleted messages, so include_deleted makes a difference.
    session_id = max(
        emulator.data.messages, key=lambda i: sum(m["deleted"] for m in emulator.data.messages[i])
    )
    result = await call(make_server, era, "get_message_session_stat", {"id": session_id})
    assert result.structured_content == expected_stat(emulator, session_id, include_deleted=False)
    with_deleted = await call(
        make_server, era, "get_message_session_stat", {"id": session_id, "include_deleted": True}
    )
    assert with_deleted.structured_content == expected_stat(emulator, session_id, include_deleted=True)
    assert with_deleted.structured_content["all"] > result.structured_content["all"]
    assert [r.query for r in tm_requests(emulator)] == [{"includeDeleted": "0"}, {"includeDeleted": "1"}]


async def test_messages_filtered_by_status(make_server: Any, emulator: Emulator, era: str) -> None:
    session_id = max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))
    arguments = {"id": session_id, "statuses": ["f", "e", "j", "f"], "limit": 100}
    result = await call(make_server, era, "get_messages_by_session_id", arguments)
    wanted = [
        m["id"] for m in emulator.data.messages[session_id] if m["status"] in "fej" and not m["deleted"]
    ]
    assert wanted, "the seed must hold failures in its largest session"
    assert [m["id"] for m in result.structured_content["resources"]] == wanted[:100]
    [request] = tm_requests(emulator)
    assert request.path == f"/api/v2/sessions/{session_id}/messages"
    # Duplicates collapsed, order kept, joined with commas; booleans as 0/1.
    assert request.query == {"page": "1", "limit": "100", "statuses": "f,e,j", "includeDeleted": "0"}


async def test_messages_paging_and_deleted(make_server: Any, emulator: Emulator, era: str) -> None:
    session_id = max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))
    everything = emulator.data.messages[session_id]
    result = await call(
        make_server,
        era,
        "get_messages_by_session_id",
        {"id": session_id, "page": 2, "limit": 7, "include_deleted": True},
    )
    page = result.structured_content
    assert page["pageCount"] == math.ceil(len(everything) / 7)
    assert [m["id"] for m in page["resources"]] == [m["id"] for m in everything[7:14]]
    # Optional fields TextMagic left out come back as null; everything it sent comes back unchanged.
    assert {k: v for k, v in page["resources"][0].items() if v is not None} == {
        k: v for k, v in everything[7].items() if v is not None
    }
