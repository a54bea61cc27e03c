"""Sharing the account: TextMagic's rate limit is per account, and this server is not alone on it. Two ordinary
stdio servers (Claude Desktop and Claude Code open at once), each pacing at the default rate, overrun the
account's 50 requests a second together; the 429s slow them down and no call fails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from server.sandbox import Emulator
from tests.helpers import ServedEmulator, stdio_server, text_of

pytestmark = pytest.mark.anyio


async def test_two_processes_on_one_account_answer_every_call(
    served: ServedEmulator, emulator: Emulator, tmp_path: Path
) -> None:
    emulator.limit_rate(50)
    results: list[Any] = []
    with (tmp_path / "first.log").open("w") as first_log, (tmp_path / "second.log").open("w") as second_log:
        async with (
            stdio_server(served, first_log) as first,
            stdio_server(served, second_log) as second,
            anyio.create_task_group() as group,
        ):
            # Both started before either asks: their reports overlap.
            for client in (first, second):

                async def report(client: Any = client) -> None:
                    results.append(await client.call_tool("get_delivery_report", {"since": "2026-10-01"}))

                group.start_soon(report)
    assert len(results) == 2 and all(not r.is_error for r in results), [text_of(r) for r in results]
    assert len({r.structured_content["messages"] for r in results}) == 1
    assert emulator.rejected_for_rate > 0, "the account's limit was reached, and waited out"
