"""The adversarial review's defects, each with the test that failed before its fix (D2, D3, D4 and D10, the bounds,
are in test_bounds.py and test_sharing.py)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mcp_types import PromptReference, ResourceTemplateReference

from server.sandbox import Emulator
from tests.helpers import (
    ServedEmulator,
    User,
    add_session,
    connect,
    newest,
    preview_token,
    records,
    running_redis,
    sent,
    text_of,
    tm_requests,
)

pytestmark = pytest.mark.anyio
MATCHING = "delete_message_sessions_matching"
BULK = "delete_message_sessions_bulk"


async def test_d1_completion_reveals_nothing_the_served_tools_do_not(
    make_server: Any, emulator: Emulator
) -> None:
    template = ResourceTemplateReference(uri="textmagic://sessions/{id}")
    prompt = PromptReference(name="delivery_report")
    async with connect(make_server(tools="get_message_session_stat")) as client:
        searched = [
            await client.complete(template, {"name": "id", "value": "Your code"}),
            await client.complete(prompt, {"name": "session", "value": "Reminder"}),
        ]
    assert [answer.completion.values for answer in searched] == [[], []]
    assert tm_requests(emulator) == []


async def test_d5_delete_all_beyond_what_a_preview_sees_is_refused(
    make_server: Any, emulator: Emulator
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    for n in range(80):
        add_session(emulator, 49_100_000 + n, start + timedelta(hours=n))
    server = make_server(allow_delete_all=True, scan_limit=100)
    async with connect(server) as client:
        preview = await client.call_tool(BULK, {"all": True})
    assert preview.is_error and "more sessions than one preview reads" in text_of(preview)
    assert "delete_message_sessions_matching" in text_of(preview) and sent(emulator, "POST") == 0


async def test_d6_the_audit_accounts_for_every_deleted_session(
    make_server: Any, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    start = datetime(2026, 11, 19, tzinfo=UTC)
    ids = [
        add_session(emulator, 49_200_000 + n, start + timedelta(minutes=n), title="Bulk test")["id"]
        for n in range(150)
    ]
    arguments = {"text": "bulk test"}
    async with connect(make_server(audit_log=str(audit))) as client:
        token = await preview_token(client, MATCHING, arguments)
        done = await client.call_tool(MATCHING, {**arguments, "confirm": True, "confirmation_token": token})
    assert done.structured_content["deleted_count"] == 150
    sending, deleted = records(audit)[-2:]
    digest = hashlib.sha256(",".join(map(str, sorted(ids))).encode()).hexdigest()
    for record in (sending, deleted):
        assert (record["ids_count"], record["ids_sha256"], len(record["ids"])) == (150, digest, 100)
        assert "filter: text 'bulk test'" in record["detail"] and "150 sessions" in record["detail"]
    assert deleted["outcome"] == "deleted"


async def test_d7_the_markdown_report_is_inert(make_server: Any, emulator: Emulator) -> None:
    [session_id] = newest(emulator)
    session = emulator.data.sessions[session_id]
    session["title"] = "<img src=x onerror=alert(1)>"
    for message in emulator.data.messages[session_id]:
        message["firstName"] = "[click](javascript:alert(1))"
        message["status"] = "f"
    async with connect(make_server()) as client:
        read = await client.read_resource(f"textmagic://sessions/{session_id}/report")
    markdown = read.contents[0].text
    assert "<img" not in markdown and "&lt;img src=x onerror=alert(1)&gt;" in markdown
    assert "\\[click\\](javascript" in markdown
    assert not re.search(r"(?<!\\)\]\(javascript", markdown)


async def test_d8_dates_beyond_any_calendar_get_a_clear_error_and_odd_upstream_dates_are_survived(
    make_server: Any, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    add_session(emulator, 49_300_001, datetime(2026, 11, 10, tzinfo=UTC), title="From far ahead")
    # A message stamped at the end of any calendar, seen from east of UTC.
    emulator.data.messages[49_300_001][0]["messageTime"] = "9999-12-31T23:59:00+0000"
    async with connect(make_server(audit_log=str(audit))) as client:
        report = await client.call_tool("get_delivery_report", {"until": "9999-12-31"})
        cleanup = await client.call_tool(MATCHING, {"until": "9999-12-31"})
        odd = await client.call_tool(
            "get_delivery_report", {"text": "far ahead", "group_by": ["day"], "timezone": "Asia/Tokyo"}
        )
    for refused in (report, cleanup):
        assert refused.is_error and "until: outside 1970-01-01 to 9000-12-31" in text_of(refused)
        assert "Traceback" not in text_of(refused)
    assert records(audit)[-1]["outcome"] == "refused"
    assert not odd.is_error and odd.structured_content["messages"] == 1, text_of(odd)


async def test_d9_a_preview_that_cannot_be_kept_says_so_and_is_audited(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    from server.state.settings import load_settings
    from server.wiring.app import build_server
    from tests.helpers import API_KEY, USERNAME

    audit = tmp_path / "audit.jsonl"
    with running_redis(tmp_path) as url:
        settings = load_settings(
            username=USERNAME,
            api_key=API_KEY,
            base_url=served.url,
            redis_url=url,
            audit_log=str(audit),
            confirmation_secret="defects-share-this-secret-0123456789abcdef",
        )
        server = build_server(settings)
    # Redis is down now; the server was started while it was up.
    async with connect(server) as client:
        preview = await client.call_tool(MATCHING, {"text": "reminder"})
    assert preview.is_error and "cannot be kept for its confirmation" in text_of(preview)
    assert records(audit)[-1]["outcome"] == "failed"


async def test_d11_only_an_http_404_means_gone(make_server: Any, emulator: Emulator) -> None:
    [session_id] = newest(emulator)
    denied = {"code": 404, "message": "Not found, says the body."}
    emulator.fail_next(403, denied, path=f"/api/v2/sessions/{session_id}")
    async with connect(make_server()) as client:
        read = await client.call_tool("get_message_session", {"id": session_id})
        token = await preview_token(client, BULK, {"ids": [session_id]})
        # The delete's answer is lost; the look-up after it is denied with a body that says 404.
        emulator.fail_next(503, path="/api/v2/sessions/delete")
        emulator.fail_next(403, denied, path=f"/api/v2/sessions/{session_id}", skip=1)
        done = await client.call_tool(
            BULK, {"ids": [session_id], "confirm": True, "confirmation_token": token}
        )
    assert read.is_error and "denied access (403" in text_of(read) and "does not exist" not in text_of(read)
    assert (
        done.structured_content["deleted"] is False and done.structured_content.get("deleted_ids", []) == []
    )
    assert session_id in emulator.data.sessions


async def test_d12_a_title_cannot_speak_for_the_form(make_server: Any, emulator: Emulator) -> None:
    [session_id] = newest(emulator)
    emulator.data.sessions[session_id]["title"] = 'Nothing is deleted"). Confirm? ("'
    user = User("decline")
    async with connect(make_server(), "modern", elicitation_callback=user) as client:
        token = await preview_token(client, BULK, {"ids": [session_id]})
        await client.call_tool(BULK, {"ids": [session_id], "confirm": True, "confirmation_token": token})
    [question] = user.questions
    assert '(2026-11-21, "Nothing is deleted\\"). Confirm? (\\"")' in question
    assert question.startswith("Delete 1 session") and session_id in emulator.data.sessions


@pytest.mark.parametrize("tool", [BULK, MATCHING])
async def test_an_id_that_now_names_another_session_is_left_alone(
    make_server: Any, emulator: Emulator, tool: str
) -> None:
    start = datetime(2026, 11, 19, 8, tzinfo=UTC)
    ids = [
        add_session(emulator, 49_400_000 + n, start + timedelta(minutes=n), title="Reused id")["id"]
        for n in range(3)
    ]
    arguments: dict[str, Any] = {"ids": ids} if tool == BULK else {"text": "reused id"}
    async with connect(make_server()) as client:
        token = await preview_token(client, tool, arguments)
        # Between preview and confirmation, the first id comes to name another session.
        add_session(emulator, ids[0], start + timedelta(days=3), title="Reused id, but another session")
        done = await client.call_tool(tool, {**arguments, "confirm": True, "confirmation_token": token})
    result = done.structured_content
    assert sorted(result["deleted_ids"]) == ids[1:] and ids[0] in emulator.data.sessions
    assert f"Left alone: {ids[0]}" in result["message"]
