"""With recognisable secrets, run every tool, every error path and every fault; the secrets appear nowhere:
not in results, not in logs (at DEBUG), not in the audit file, not on a subprocess's stderr."""

from __future__ import annotations

import base64
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from server.sandbox import Emulator
from tests.helpers import API_KEY, USERNAME, ServedEmulator, connect, stdio_server

pytestmark = pytest.mark.anyio

WRONG_KEY = "tmkey-WRONG-SECRET-0b7c55e1d2"
CONFIRMATION_SECRET = "confirm-SECRET-a61f0c-0123456789abcdef"


def secret_forms() -> list[str]:
    forms = [API_KEY, WRONG_KEY, CONFIRMATION_SECRET]
    for key in (API_KEY, WRONG_KEY):
        forms.append(base64.b64encode(f"{USERNAME}:{key}".encode()).decode())
    return forms


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def exercise(client: Any, emulator: Emulator, outputs: list[str]) -> None:
    """Every tool, happy and unhappy, and every fault the emulator can play."""
    newest = sorted(emulator.data.sessions, reverse=True)

    async def call(tool: str, arguments: dict[str, Any]) -> Any:
        result = await client.call_tool(tool, arguments)
        outputs.append(repr(result.model_dump()))
        return result

    await call("get_all_message_sessions", {"limit": 3})
    await call("get_message_session", {"id": newest[0]})
    await call("get_message_session_stat", {"id": newest[0], "include_deleted": True})
    await call("get_messages_by_session_id", {"id": newest[0], "statuses": ["d", "f"]})
    await call("get_message_session", {"id": 1})
    await call("get_message_session", {"id": "bad"})
    preview = await call("delete_message_session", {"id": newest[0]})
    token = (preview.structured_content or {}).get("confirmation_token")
    await call("delete_message_session", {"id": newest[0], "confirm": True, "confirmation_token": token})
    await call("delete_message_session", {"id": newest[1], "confirm": True, "confirmation_token": "v1.x.y"})
    bulk = await call("delete_message_sessions_bulk", {"ids": newest[1:3]})
    bulk_token = (bulk.structured_content or {}).get("confirmation_token")
    emulator.fail_next(reset=True, method="POST", carry_out=True)
    await call(
        "delete_message_sessions_bulk",
        {"ids": newest[1:3], "confirm": True, "confirmation_token": bulk_token},
    )
    await call("delete_message_sessions_bulk", {"all": True})
    for fault in ({"status": 429}, {"status": 503}, {"status": 500}, {"reset": True}, {"stall": 0.5}):
        # As many as the two attempts consume: leftovers would answer later calls.
        emulator.fail_next(times=2, **fault)
        await call("get_all_message_sessions", {})
    emulator.fail_next(200, raw=b"{broken")
    await call("get_all_message_sessions", {})
    emulator.fail_next(200, {"unexpected": True})
    await call("get_all_message_sessions", {})
    emulator.fail_next(
        400, {"code": 400, "message": "Validation Failed", "errors": {"fields": {"x": ["bad"]}}}
    )
    await call("get_messages_by_session_id", {"id": newest[3]})


async def test_no_secret_anywhere_in_process(
    make_server: Any, emulator: Emulator, tmp_path: Path, caplog: pytest.LogCaptureFixture, era: str
) -> None:
    caplog.set_level(logging.DEBUG)
    audit = tmp_path / "audit.jsonl"
    outputs: list[str] = []
    settings = {
        "audit_log": str(audit),
        "confirmation_secret": CONFIRMATION_SECRET,
        "timeout": 0.2,
        "retry_attempts": 2,
        "retry_budget": 2,
    }
    async with connect(make_server(**settings), era) as client:
        await exercise(client, emulator, outputs)
    emulator.reset()
    for broken in ({"api_key": WRONG_KEY}, {"base_url": closed_port_url()}):
        async with connect(make_server(**settings, **broken), era) as client:
            for tool, arguments in (("get_all_message_sessions", {}), ("delete_message_session", {"id": 5})):
                outputs.append(repr((await client.call_tool(tool, arguments)).model_dump()))
    haystacks = {
        "results": "\n".join(outputs),
        "logs": "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records),
        "audit": audit.read_text(),
    }
    assert "401" in haystacks["results"] and "Could not reach TextMagic" in haystacks["results"]
    assert "delete audit" in haystacks["logs"] and '"outcome": "deleted"' in haystacks["audit"]
    for where, text in haystacks.items():
        for secret in secret_forms():
            assert secret not in text, f"a secret leaked into the {where}"


async def test_no_secret_on_a_debug_subprocess_stderr(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    outputs: list[str] = []
    env = {
        "TEXTMAGIC_LOG_LEVEL": "DEBUG",
        "TEXTMAGIC_CONFIRMATION_SECRET": CONFIRMATION_SECRET,
        "TEXTMAGIC_TIMEOUT": "0.2",
        "TEXTMAGIC_RETRY_ATTEMPTS": "2",
    }
    with (tmp_path / "stderr.log").open("w+") as errlog:
        async with stdio_server(served, errlog, "auto", **env) as client:
            await exercise(client, emulator, outputs)
        errlog.seek(0)
        log = errlog.read()
    assert "DEBUG" in log and "server.calls" in log
    for text in (log, "\n".join(outputs)):
        for secret in secret_forms():
            assert secret not in text
