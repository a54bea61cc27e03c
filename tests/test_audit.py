"""The audit reconciles: a confirmed delete's records share an operation id and name the replica, and a delete a
crash interrupted after it was sent is looked up at the next start and completed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from server.sandbox import Emulator
from tests.helpers import connect, newest, preview_then_confirm, records

pytestmark = pytest.mark.anyio


async def test_a_deletes_records_share_its_operation_and_name_the_replica(
    make_server: Any, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    [session_id] = newest(emulator)
    async with connect(make_server(audit_log=str(audit), instance="replica-7")) as client:
        await preview_then_confirm(client, "delete_message_session", {"id": session_id})
    preview, sending, deleted = records(audit)
    assert [r["outcome"] for r in (preview, sending, deleted)] == ["preview", "sending", "deleted"]
    assert sending["operation"] == deleted["operation"] != preview["operation"]
    assert {r["instance"] for r in (preview, sending, deleted)} == {"replica-7"}


async def test_a_delete_interrupted_after_it_was_sent_is_reconciled_at_start(
    make_server: Any, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    kept, gone = newest(emulator, 2)
    emulator.data.sessions.pop(gone)
    # What a process killed after sending its delete leaves: "sending", and nothing after it.
    interrupted = {
        "operation": "op-killed",
        "tool": "delete_message_sessions_bulk",
        "outcome": "sending",
        "ids": [kept, gone],
    }
    finished = {"operation": "op-done", "tool": "delete_message_session", "outcome": "sending", "ids": [kept]}
    ended = {**finished, "outcome": "deleted"}
    audit.write_text("".join(json.dumps(r) + "\n" for r in (interrupted, finished, ended)))
    async with connect(make_server(audit_log=str(audit), fresh=True)) as client:
        await client.list_tools()
    reconciled = [r for r in records(audit) if r["outcome"] == "reconciled"]
    assert [(r["operation"], r["ids"]) for r in reconciled] == [("op-killed", [gone])]
    assert f"1 gone (deleted), 1 still there [{kept}]" in reconciled[0]["detail"]
