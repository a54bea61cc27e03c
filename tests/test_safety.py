"""Safe deletes: the user's own approval where the client can ask, switches, progress, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp_types import Implementation

from server.sandbox import Emulator
from tests.helpers import (
    API_KEY,
    User,
    connect,
    deletions,
    newest,
    preview_then_confirm,
    text_of,
    tm_requests,
)

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("tool", ["delete_message_session", "delete_message_sessions_bulk"])
async def test_user_approves(make_server: Any, emulator: Emulator, era: str, tool: str) -> None:
    ids = newest(emulator, 1 if tool == "delete_message_session" else 3)
    arguments = {"id": ids[0]} if tool == "delete_message_session" else {"ids": ids}
    user = User("accept")
    async with connect(make_server(), era, elicitation_callback=user) as client:
        done = await preview_then_confirm(client, tool, arguments)
    assert not done.is_error, text_of(done)
    assert done.structured_content["deleted"] is True
    sessions = [emulator.data.sessions.get(i) for i in ids]
    assert sessions == [None] * len(ids)
    # Asked exactly once, on the confirming call; the preview never asks.
    [question] = user.questions
    assert f"Delete {len(ids)} session" in question and "cannot be undone" in question
    assert "recipients" in question and "in account currency" in question
    assert len(deletions(emulator)) == 1


@pytest.mark.parametrize(
    ("action", "content", "said"),
    [
        ("decline", None, "did not approve"),
        ("cancel", None, "cancelled the confirmation"),
        ("accept", {"confirm": False}, "did not approve"),
    ],
)
@pytest.mark.parametrize("tool", ["delete_message_session", "delete_message_sessions_bulk"])
async def test_user_declines_or_cancels(
    make_server: Any, emulator: Emulator, era: str, tool: str, action: str, content: Any, said: str
) -> None:
    user = User(action, content)
    ids = newest(emulator, 2)
    arguments = {"id": ids[0]} if tool == "delete_message_session" else {"ids": ids}
    async with connect(make_server(), era, elicitation_callback=user) as client:
        result = await preview_then_confirm(client, tool, arguments)
    assert not result.is_error, "a refusal by the user is an answer, not an error"
    assert result.structured_content["deleted"] is False
    assert said in result.structured_content["message"]
    assert len(user.questions) == 1
    assert deletions(emulator) == [] and emulator.deleted_ids == []


async def test_invalid_token_is_refused_before_asking(make_server: Any, emulator: Emulator, era: str) -> None:
    [session_id] = newest(emulator, 1)
    user = User("accept")
    async with connect(make_server(), era, elicitation_callback=user) as client:
        result = await client.call_tool(
            "delete_message_session", {"id": session_id, "confirm": True, "confirmation_token": "v1.a.b"}
        )
    assert result.is_error and user.questions == []
    assert tm_requests(emulator) == []


async def test_delete_all_asks_naming_what_goes(make_server: Any, emulator: Emulator, era: str) -> None:
    total = len(emulator.data.sessions)
    newest_ten = newest(emulator, 10)
    user = User("accept")
    async with connect(make_server(allow_delete_all=True), era, elicitation_callback=user) as client:
        done = await preview_then_confirm(client, "delete_message_sessions_bulk", {"all": True})
    assert done.structured_content["deleted_all"] is True
    [question] = user.questions
    assert question.startswith(f"Delete ALL {total} sessions of the account (")
    assert all(str(session_id) in question for session_id in newest_ten)
    assert f"and {total - 10} sessions more" in question and question.endswith("this cannot be undone.")


async def test_sandbox_question_says_sandbox() -> None:
    from server.state.settings import load_settings
    from server.wiring.app import build_server

    user = User("decline")
    async with connect(
        build_server(load_settings(sandbox=True)), "modern", elicitation_callback=user
    ) as client:
        page = await client.call_tool("get_all_message_sessions", {"limit": 1})
        session_id = page.structured_content["resources"][0]["id"]
        await preview_then_confirm(client, "delete_message_session", {"id": session_id})
    assert user.questions[0].startswith("[SANDBOX, made-up data] Delete 1 session")


@pytest.mark.parametrize("confirm", [False, True])
async def test_human_confirmation_required_but_client_cannot_ask(
    make_server: Any, emulator: Emulator, era: str, confirm: bool
) -> None:
    [session_id] = newest(emulator, 1)
    arguments = {"id": session_id, "confirm": confirm, "confirmation_token": "v1.a.b" if confirm else None}
    async with connect(make_server(require_human_confirmation=True), era) as client:
        result = await client.call_tool("delete_message_session", arguments)
    assert result.is_error
    assert "TEXTMAGIC_REQUIRE_HUMAN_CONFIRMATION" in text_of(result) and "elicitation" in text_of(result)
    assert tm_requests(emulator) == []


async def test_human_confirmation_required_and_client_can_ask(
    make_server: Any, emulator: Emulator, era: str
) -> None:
    [session_id] = newest(emulator, 1)
    user = User("accept")
    async with connect(
        make_server(require_human_confirmation=True), era, elicitation_callback=user
    ) as client:
        done = await preview_then_confirm(client, "delete_message_session", {"id": session_id})
    assert done.structured_content["deleted"] is True and len(user.questions) == 1


async def test_preview_reports_progress(make_server: Any, emulator: Emulator, era: str) -> None:
    ids = newest(emulator, 12)
    reports: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        reports.append((done, total, message))

    async with connect(make_server(), era) as client:
        result = await client.call_tool(
            "delete_message_sessions_bulk", {"ids": ids}, progress_callback=progress
        )
    assert not result.is_error
    assert sorted(done for done, _, _ in reports) == list(range(1, 13))
    assert {total for _, total, _ in reports} == {12}
    assert "Looked up 12 of 12 sessions" in {message for _, _, message in reports}


async def test_every_attempt_is_audited(
    make_server: Any, emulator: Emulator, tmp_path: Path, era: str
) -> None:
    audit = tmp_path / "audit.jsonl"
    first, second = newest(emulator, 2)
    user = User("decline")
    server = make_server(audit_log=str(audit))
    info = Implementation(name="audit-test-client", version="1.0")
    async with connect(server, era, elicitation_callback=user, client_info=info) as client:
        declined = await preview_then_confirm(client, "delete_message_session", {"id": first})
        await client.call_tool(
            "delete_message_session", {"id": first, "confirm": True, "confirmation_token": "v1.x.y"}
        )
        await client.call_tool("delete_message_sessions_bulk", {"all": True})
        user.action = "accept"
        done = await preview_then_confirm(client, "delete_message_sessions_bulk", {"ids": [second, 77]})
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    summary = [(r["tool"], r["outcome"], r.get("ids"), r.get("all")) for r in records]
    assert summary == [
        ("delete_message_session", "preview", [first], None),
        ("delete_message_session", "declined", [first], None),
        ("delete_message_session", "refused", [first], None),
        ("delete_message_sessions_bulk", "refused", [], True),
        ("delete_message_sessions_bulk", "preview", [77, second], None),
        ("delete_message_sessions_bulk", "sending", [second], None),
        ("delete_message_sessions_bulk", "deleted", [second], None),
    ]
    assert {r["client"] for r in records} == {"audit-test-client"}
    assert all(r["time"].endswith("+00:00") for r in records)
    text = audit.read_text()
    assert API_KEY not in text and "v1." not in text
    assert "confirmation_token" not in declined.structured_content
    assert "confirmation_token" not in done.structured_content


async def test_unwritable_audit_log_stops_the_server(make_server: Any, tmp_path: Path) -> None:
    from server.state.settings import ConfigError

    with pytest.raises(ConfigError, match="TEXTMAGIC_AUDIT_LOG"):
        make_server(audit_log=str(tmp_path / "missing-folder" / "audit.jsonl"))


@pytest.mark.parametrize(
    "settings", [{"read_only": True}, {"tools": "get_message_session,get_all_message_sessions"}]
)
async def test_disabled_tools_are_unlisted_and_refused(
    make_server: Any, emulator: Emulator, era: str, settings: dict[str, Any]
) -> None:
    [session_id] = newest(emulator, 1)
    async with connect(make_server(**settings), era) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        refused = await client.call_tool("delete_message_session", {"id": session_id})
        bulk = await client.call_tool("delete_message_sessions_bulk", {"ids": [session_id]})
    assert not names & {"delete_message_session", "delete_message_sessions_bulk"}
    assert refused.is_error and bulk.is_error
    reason = "read-only" if "read_only" in settings else "not enabled"
    assert reason in text_of(refused) and reason in text_of(bulk)
    assert tm_requests(emulator) == []


async def test_read_only_refusals_are_audited(make_server: Any, emulator: Emulator, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    async with connect(make_server(read_only=True, audit_log=str(audit)), "modern") as client:
        await client.call_tool("delete_message_sessions_bulk", {"ids": [3, 4, "x"]})
        await client.call_tool("delete_message_sessions_bulk", {"all": True, "confirm": True})
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["outcome"], r.get("ids"), r.get("all")) for r in records] == [
        ("refused", [3, 4], None),
        ("refused", [], True),
    ]
    assert all("read-only" in r["detail"] for r in records)


def test_unknown_tool_name_fails_at_start(make_server: Any) -> None:
    from server.state.settings import ConfigError

    with pytest.raises(ConfigError, match="TEXTMAGIC_TOOLS: unknown tool 'delete_everything'"):
        make_server(tools="get_message_session,delete_everything")
