"""End to end: the installed console script as a stdio subprocess, TextMagic played by the emulator over HTTP."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from server.sandbox import Emulator
from tests.helpers import (
    API_KEY,
    TOOL_NAMES,
    USERNAME,
    ServedEmulator,
    console_script,
    newest,
    stdio_server,
    text_of,
    tm_requests,
)

pytestmark = pytest.mark.anyio


async def test_every_tool_over_stdio(served: ServedEmulator, emulator: Emulator, tmp_path: Path) -> None:
    newest = sorted(emulator.data.sessions, reverse=True)
    one, two, three = newest[:3]
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with stdio_server(served, errlog, mode="auto") as client:
            assert {t.name for t in (await client.list_tools()).tools} == TOOL_NAMES
            assert client.instructions and "confirm=true" in client.instructions

            async def call(tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
                before = len(emulator.requests)
                result = await client.call_tool(tool, arguments)
                assert not result.is_error, text_of(result)
                seen = emulator.requests[before:]
                assert all(
                    (r.auth_scheme, r.username, r.authorized) == ("basic", USERNAME, True) for r in seen
                )
                assert isinstance(result.structured_content, dict)
                return result.structured_content

            page = await call("get_all_message_sessions", {"page": 2, "limit": 5})
            assert [s["id"] for s in page["resources"]] == newest[5:10]
            await call("get_message_session", {"id": one})
            await call("get_message_session_stat", {"id": one, "include_deleted": True})
            await call("get_messages_by_session_id", {"id": one, "statuses": ["d", "f"], "limit": 3})
            token = (await call("delete_message_session", {"id": one}))["confirmation_token"]
            await call("delete_message_session", {"id": one, "confirm": True, "confirmation_token": token})
            bulk = await call("delete_message_sessions_bulk", {"ids": [three, two]})
            await call(
                "delete_message_sessions_bulk",
                {"ids": [two, three], "confirm": True, "confirmation_token": bulk["confirmation_token"]},
            )
        errlog.seek(0)
        log = errlog.read()

    seen = [(r.method, r.path, r.query, r.body) for r in tm_requests(emulator)]
    base = "/api/v2/sessions"
    assert seen[:5] == [
        ("GET", base, {"page": "2", "limit": "5"}, None),
        ("GET", f"{base}/{one}", {}, None),
        ("GET", f"{base}/{one}/stat", {"includeDeleted": "1"}, None),
        (
            "GET",
            f"{base}/{one}/messages",
            {"page": "1", "limit": "3", "statuses": "d,f", "includeDeleted": "0"},
            None,
        ),
        ("GET", f"{base}/{one}", {}, None),
    ]
    # Confirming looks the session up again (it may have vanished since the preview), then deletes it.
    assert seen[5:7] == [("GET", f"{base}/{one}", {}, None), ("DELETE", f"{base}/{one}", {}, None)]
    # Bulk look-ups run concurrently, so their order is free; preview and confirmation each look both up.
    lookups = sorted([("GET", f"{base}/{two}", {}, None), ("GET", f"{base}/{three}", {}, None)])
    assert sorted(seen[7:9]) == lookups and sorted(seen[9:11]) == lookups
    ids = ",".join(map(str, sorted([two, three])))
    assert seen[11:] == [("POST", f"{base}/delete", {}, {"ids": ids, "all": 0})]
    assert sorted(emulator.deleted_ids) == sorted([one, two, three])
    assert '"tool": "get_message_session", "outcome": "ok"' in log, "one line per call at INFO"
    assert API_KEY not in log
    assert base64.b64encode(f"{USERNAME}:{API_KEY}".encode()).decode() not in log


async def test_legacy_era_over_stdio(served: ServedEmulator, emulator: Emulator, tmp_path: Path) -> None:
    [session_id] = newest(emulator)
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with stdio_server(served, errlog, "legacy", TEXTMAGIC_LOG_LEVEL="WARNING") as client:
            assert client.protocol_version == "2025-11-25"
            result = await client.call_tool("get_message_session_stat", {"id": session_id})
            refused = await client.call_tool("delete_message_session", {"id": session_id, "confirm": True})
        errlog.seek(0)
        log = errlog.read()
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["all"] == len(
        [m for m in emulator.data.messages[session_id] if not m["deleted"]]
    )
    assert refused.is_error and emulator.deleted_ids == []
    assert '"duration_ms"' not in log, "TEXTMAGIC_LOG_LEVEL=WARNING leaves the per-call lines out"


async def test_sandbox_over_stdio_as_a_new_user_runs_it(tmp_path: Path) -> None:
    params = StdioServerParameters(command=console_script(), args=["--sandbox"])
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            assert client.server_info is not None and "sandbox" in client.server_info.name
            assert client.instructions and client.instructions.startswith("SANDBOX")
            page = await client.call_tool("get_all_message_sessions", {"limit": 100})
            assert page.structured_content is not None
            newest = page.structured_content["resources"][0]["id"]
            preview = await client.call_tool("delete_message_session", {"id": newest})
            token = preview.structured_content["confirmation_token"] if preview.structured_content else None
            done = await client.call_tool(
                "delete_message_session", {"id": newest, "confirm": True, "confirmation_token": token}
            )
            after = await client.call_tool("get_message_session", {"id": newest})
    assert len(page.structured_content["resources"]) == 37
    assert done.structured_content and done.structured_content["deleted"] is True
    assert after.is_error and f"Session {newest} does not exist" in text_of(after)


async def test_switches_over_stdio(served: ServedEmulator, emulator: Emulator, tmp_path: Path) -> None:
    # The flag and the variable together: read-only wins over the tool list.
    [session_id] = newest(emulator)
    listed = "get_message_session,delete_message_session"
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with stdio_server(served, errlog, "auto", ("--read-only",), TEXTMAGIC_TOOLS=listed) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            refused = await client.call_tool("delete_message_session", {"id": session_id})
            bulk = await client.call_tool(
                "delete_message_sessions_bulk", {"ids": [session_id], "confirm": True}
            )
            unlisted = await client.call_tool("get_all_message_sessions", {})
            read = await client.call_tool("get_message_session", {"id": session_id})
        errlog.seek(0)
        log = errlog.read()
    assert names == {"get_message_session"}
    assert refused.is_error and "read-only" in text_of(refused)
    assert bulk.is_error and "read-only" in text_of(bulk)
    assert unlisted.is_error and "not enabled on this server" in text_of(unlisted)
    assert not read.is_error
    assert [r.method for r in tm_requests(emulator)] == ["GET"] and emulator.deleted_ids == []
    # Refused delete attempts are audited on stderr like any other.
    audited = [line for line in log.splitlines() if "delete audit" in line]
    assert len(audited) == 2 and all('"outcome": "refused"' in line for line in audited)
    assert f'"ids": [{session_id}]' in audited[0]


async def test_the_delivery_tools_over_stdio(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    largest = max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))
    tests = {"text": "TEST - please ignore"}
    test_ids = sorted(i for i, s in emulator.data.sessions.items() if s["title"] == "test")
    with (tmp_path / "stderr.log").open("w+") as errlog:
        env = {"TEXTMAGIC_TIMEZONE": "Europe/Berlin", "TEXTMAGIC_RATE_LIMIT": "1000"}
        async with stdio_server(served, errlog, "auto", **env) as client:
            found = await client.call_tool(
                "find_message_sessions", {"since": "2026-11-01", "with_stats": True}
            )
            report = await client.call_tool("get_delivery_report", {"id": largest, "group_by": ["country"]})
            failed = await client.call_tool("get_recipients", {"id": largest, "limit": 5})
            [link] = [block for block in failed.content if block.type == "resource_link"]
            listed = await client.read_resource(link.uri)
            preview = await client.call_tool("delete_message_sessions_matching", tests)
            token = (preview.structured_content or {})["confirmation_token"]
            done = await client.call_tool(
                "delete_message_sessions_matching", {**tests, "confirm": True, "confirmation_token": token}
            )
            prompt = await client.get_prompt("delivery_report", {"session": str(largest)})
    for result in (found, report, failed, preview, done):
        assert not result.is_error, text_of(result)
    assert found.structured_content and found.structured_content["sessions"][0]["delivered"] is not None
    assert report.structured_content and report.structured_content["messages"] > 5000
    assert failed.structured_content and failed.structured_content["total"] > 5
    assert len(listed.contents[0].text.splitlines()) == failed.structured_content["total"] + 1
    assert done.structured_content and sorted(emulator.deleted_ids) == test_ids
    assert f"id={largest}" in prompt.messages[0].content.text
