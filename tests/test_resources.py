"""Resources, prompts and completion through the SDK's client: a session and its report as resources, the failed
recipients' CSV made again from its link, session ids completed from the recent sessions."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import PromptReference, ResourceTemplateReference

from server.sandbox import Emulator
from tests.helpers import connect, newest, outcome_of, tm_requests

pytestmark = pytest.mark.anyio


async def test_the_templates_are_listed_with_their_types(make_server: Any, era: str) -> None:
    async with connect(make_server(), era) as client:
        templates = {
            t.uri_template: t.mime_type for t in (await client.list_resource_templates()).resource_templates
        }
    assert templates["textmagic://sessions/{id}"] == "application/json"
    assert templates["textmagic://sessions/{id}/report"] == "text/markdown"
    assert [uri for uri in templates if uri.startswith("textmagic://recipients.csv")], templates


async def test_a_session_and_its_report_as_resources(make_server: Any, emulator: Emulator, era: str) -> None:
    session_id = newest(emulator, 3)[-1]
    live = [m for m in emulator.data.messages[session_id] if not m["deleted"]]
    async with connect(make_server(), era) as client:
        session = await client.read_resource(f"textmagic://sessions/{session_id}")
        report = await client.read_resource(f"textmagic://sessions/{session_id}/report")
        with pytest.raises(MCPError, match="Session 1 does not exist"):
            await client.read_resource("textmagic://sessions/1")
    [content] = session.contents
    body = json.loads(content.text)
    assert body["id"] == session_id and body["outcome"]["delivered"] == sum(m["status"] == "d" for m in live)
    [markdown] = report.contents
    assert markdown.mime_type == "text/markdown" and markdown.text.startswith("# Delivery report")
    failed = sum(outcome_of(m["status"]) == "failed" for m in live)
    assert f"| failed | {failed} |" in markdown.text and "## By country" in markdown.text


async def test_a_bad_session_id_in_a_resource_is_explained(make_server: Any, emulator: Emulator) -> None:
    async with connect(make_server()) as client:
        with pytest.raises(MCPError, match="not a session id"):
            await client.read_resource("textmagic://sessions/abc")
    assert tm_requests(emulator) == []


async def test_the_csv_link_makes_the_whole_list_again(
    make_server: Any, emulator: Emulator, era: str
) -> None:
    query = {
        "since": "2026-11-10",
        "until": "2026-11-18",
        "timezone": "Europe/Berlin",
        "outcomes": ["failed", "rejected"],
    }
    async with connect(make_server(), era) as client:
        cut = await client.call_tool("get_recipients", {**query, "limit": 3})
        whole = await client.call_tool("get_recipients", {**query, "limit": 1000})
        [link] = [block for block in cut.content if block.type == "resource_link"]
        read = await client.read_resource(link.uri)
    assert link.mime_type == "text/csv" and cut.structured_content["csv"] == str(link.uri)
    assert "since=2026-11-10" in str(link.uri) and "timezone=Europe%2FBerlin" in str(link.uri)
    assert "outcomes=failed%2Crejected" in str(link.uri)
    [content] = read.contents
    rows = list(csv.DictReader(io.StringIO(content.text)))
    expected = whole.structured_content["recipients"]
    assert len(rows) == cut.structured_content["total"] == len(expected) > 3
    assert [row["number"] for row in rows] == [r["number"] for r in expected]
    assert [int(row["failed"]) for row in rows] == [r["failed"] for r in expected]
    assert [int(row["messages"]) for row in rows] == [r["messages"] for r in expected]


async def test_session_ids_are_completed_from_recent_sessions(make_server: Any, emulator: Emulator) -> None:
    sessions = emulator.data.sessions
    reminder = max(i for i, s in sessions.items() if "reminder" in (s["text"] or ""))
    async with connect(make_server()) as client:
        by_prefix = await client.complete(
            ResourceTemplateReference(uri="textmagic://sessions/{id}"), {"name": "id", "value": "4821"}
        )
        by_text = await client.complete(
            PromptReference(name="delivery_report"), {"name": "session", "value": "Reminder"}
        )
    assert by_prefix.completion.values and all(v.startswith("4821") for v in by_prefix.completion.values)
    assert str(reminder) in by_text.completion.values
    for value in by_text.completion.values:
        session = sessions[int(value)]
        assert "reminder" in f"{session['title']} {session['text']}".lower()


async def test_the_prompts_lead_to_the_one_call_tools(make_server: Any, era: str) -> None:
    async with connect(make_server(), era) as client:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        report = await client.get_prompt(
            "delivery_report", {"period": "yesterday", "timezone": "Europe/Berlin"}
        )
        cleanup = await client.get_prompt("cleanup_sessions", {"description": "last week's test sessions"})
    assert set(prompts) == {"delivery_report", "cleanup_sessions"}
    report_text = report.messages[0].content.text
    assert (
        "get_delivery_report" in report_text and "yesterday" in report_text and "Europe/Berlin" in report_text
    )
    cleanup_text = cleanup.messages[0].content.text
    assert "delete_message_sessions_matching" in cleanup_text and "WITHOUT confirm" in cleanup_text
    assert "last week's test sessions" in cleanup_text


async def test_a_read_only_server_offers_no_cleanup_prompt(make_server: Any) -> None:
    async with connect(make_server(read_only=True)) as client:
        prompts = {p.name for p in (await client.list_prompts()).prompts}
    assert prompts == {"delivery_report"}


@pytest.mark.parametrize(
    "uri",
    [
        "textmagic://nothing-here",
        "textmagic://sessions/1",
        "textmagic://sessions/not-an-id",
        "textmagic://sessions/1/report",
        "textmagic://recipients.csv?since=yesterday",
    ],
)
async def test_a_resource_that_does_not_exist_is_invalid_params(
    make_server: Any, emulator: Emulator, era: str, uri: str
) -> None:
    # The 2026-07-28 revision: reading a resource that does not exist answers -32602, not -32603.
    async with connect(make_server(), era) as client:
        with pytest.raises(MCPError) as refused:
            await client.read_resource(uri)
    assert refused.value.code == -32602 and "Traceback" not in refused.value.message


async def test_lists_carry_cache_hints_for_one_caller(make_server: Any) -> None:
    async with connect(make_server(), "modern") as client:
        listed = [
            await client.list_tools(),
            await client.list_prompts(),
            await client.list_resources(),
            await client.list_resource_templates(),
        ]
    # One client for the process's life (stdio, in memory): an hour, private.
    assert {(result.ttl_ms, result.cache_scope) for result in listed} == {(3_600_000, "private")}
