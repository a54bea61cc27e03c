"""A Hypothesis state machine over previews, confirmations, replays, concurrent confirmations, and sessions added or
removed at the emulator meanwhile, through a real MCP client: nothing is deleted that was not previewed and then
confirmed, and a confirmation deletes once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import anyio
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from server.state.settings import load_settings
from server.wiring.app import SessionsServer, build_server
from tests.helpers import API_KEY, USERNAME, ServedEmulator, add_session, connect, tm_requests

SINGLE, BULK, MATCHING = (
    "delete_message_session",
    "delete_message_sessions_bulk",
    "delete_message_sessions_matching",
)
TITLE = "State machine test"


@dataclass
class Preview:
    tool: str
    arguments: dict[str, Any]
    token: str
    shown: frozenset[int]
    confirmed: int = 0


@dataclass
class World:
    previews: list[Preview] = field(default_factory=list)
    # Every session a successful confirmation may have deleted: what its preview showed.
    allowed: set[int] = field(default_factory=set)
    next_id: int = 48_800_000


def machine(served: ServedEmulator, server: SessionsServer) -> type[RuleBasedStateMachine]:
    emulator = served.emulator

    class Deletes(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            emulator.reset()
            self.world = World()
            for _ in range(3):
                self.add_matching()

        def call(self, tool: str, arguments: dict[str, Any]) -> Any:
            async def run() -> Any:
                async with connect(server) as client:
                    return await client.call_tool(tool, arguments)

            return anyio.run(run)

        @rule()
        def add_matching(self) -> None:
            add_session(emulator, self.world.next_id, datetime.now(UTC), title=TITLE)
            self.world.next_id += 1

        @rule(pick=st.integers(0, 50))
        def remove_one(self, pick: int) -> None:
            if emulator.data.sessions:
                ids = sorted(emulator.data.sessions)
                session_id = ids[pick % len(ids)]
                del emulator.data.sessions[session_id], emulator.data.messages[session_id]

        @rule(
            tool=st.sampled_from([SINGLE, BULK, MATCHING]),
            picks=st.lists(st.integers(0, 50), min_size=1, max_size=4),
        )
        def preview(self, tool: str, picks: list[int]) -> None:
            ids = sorted(emulator.data.sessions, reverse=True)[:8]
            if not ids:
                return
            chosen = sorted({ids[p % len(ids)] for p in picks})
            arguments: dict[str, Any] = (
                {"id": chosen[0]} if tool == SINGLE else {"ids": chosen} if tool == BULK else {"text": TITLE}
            )
            result = self.call(tool, arguments)
            content = result.structured_content or {}
            if content.get("confirmation_token"):
                preview = content["preview"]
                shown = preview.get("ids") or [s["id"] for s in preview["sessions"]]
                if tool == MATCHING:
                    # The first 20 are listed; the set is every session matching now.
                    shown = [i for i, s in emulator.data.sessions.items() if s["title"] == TITLE]
                confirming = {**arguments, **({"ids": preview["ids"]} if tool == BULK else {})}
                self.world.previews.append(
                    Preview(tool, confirming, content["confirmation_token"], frozenset(shown))
                )

        @precondition(lambda self: bool(self.world.previews))
        @rule(pick=st.integers(0, 50), times=st.integers(1, 3))
        def confirm(self, pick: int, times: int) -> None:
            preview = self.world.previews[pick % len(self.world.previews)]
            arguments = {**preview.arguments, "confirm": True, "confirmation_token": preview.token}

            async def run() -> list[Any]:
                results: list[Any] = []
                async with connect(server) as client, anyio.create_task_group() as group:
                    for _ in range(times):

                        async def one() -> None:
                            results.append(await client.call_tool(preview.tool, arguments))

                        group.start_soon(one)
                return results

            results = anyio.run(run)
            succeeded = [r for r in results if not r.is_error and r.structured_content.get("deleted")]
            preview.confirmed += len(succeeded)
            event(f"{preview.tool}: {len(succeeded)} of {times} confirmations deleted")
            if succeeded:
                self.world.allowed |= preview.shown

        @invariant()
        def nothing_unpreviewed_or_twice(self) -> None:
            deleted = emulator.deleted_ids
            assert set(deleted) <= self.world.allowed, "deleted what no confirmed preview showed"
            assert len(deleted) == len(set(deleted)), "a session deleted twice"
            assert all(p.confirmed <= 1 for p in self.world.previews), "a confirmation worked twice"
            sends = [r for r in tm_requests(emulator) if r.method in ("DELETE", "POST")]
            assert len(sends) <= sum(p.confirmed for p in self.world.previews)

    return Deletes


def test_nothing_is_deleted_that_was_not_previewed_and_confirmed_once(served: ServedEmulator) -> None:
    server = build_server(
        load_settings(
            username=USERNAME, api_key=API_KEY, base_url=served.url, rate_limit=1000, allow_delete_all=True
        )
    )
    run_state_machine_as_test(
        machine(served, server),
        settings=settings(
            max_examples=12,
            stateful_step_count=8,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
