"""Property: the emulator loses exactly the sessions of confirmed calls with a valid token, approved where asked.

Random sequences of previews and confirmations through a real MCP client, with tokens that are valid, expired,
altered, signed elsewhere, missing, or swapped between tools and id sets, on both protocol eras, with and
without a user who is asked. After every step the emulator's deleted sessions, and the destructive requests
it received, must match a model of the contract.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import anyio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from mcp_types import ElicitRequestParams, ElicitResult

from server.state.confirmation import Confirmations, Target
from server.state.settings import load_settings
from server.wiring.app import SessionsServer, build_server
from tests.helpers import API_KEY, USERNAME, ServedEmulator, connect, tm_requests

SECRET = "property-test-secret-0123456789abcdef"
SINGLE, BULK = "delete_message_session", "delete_message_sessions_bulk"
REAL, MISSING = 6, 2  # the pool: the six newest sessions and two ids that never existed

pool_indexes = st.lists(st.integers(0, REAL + MISSING - 1), min_size=1, max_size=5)
# How a round's confirmation is attempted. "exact" (as the preview said) is listed three times because it is
# the path that deletes; the others must never delete anything of their own.
attempts = st.sampled_from(
    [
        "exact",
        "exact",
        "exact",
        "stale",
        "requested_ids",
        "other_tool",
        "expired",
        "tampered",
        "stranger",
        "missing",
        "garbage",
        "all",
        "none",
    ]
)
# A round: preview (tool, pool indexes), then one confirmation attempt (kind, pick among earlier tokens).
rounds = st.tuples(st.sampled_from([SINGLE, BULK]), pool_indexes, attempts, st.integers(0, 30))


@dataclass
class Issued:
    tool: str
    ids: frozenset[int]
    token: str
    # A confirmation works once: spent when it was carried out or the person answered.
    used: bool = False


@dataclass
class Model:
    existing: set[int]
    deleted: set[int] = field(default_factory=set)
    destructive_calls: int = 0
    questions: int = 0
    issued: list[Issued] = field(default_factory=list)


_servers: dict[str, SessionsServer] = {}


def server_for(url: str) -> SessionsServer:
    # One server for all examples: it keeps no per-call state, and the emulator is reset per example.
    if url not in _servers:
        _servers[url] = build_server(
            load_settings(
                username=USERNAME, api_key=API_KEY, base_url=url, confirmation_secret=SECRET, rate_limit=1000
            )
        )
    return _servers[url]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    script=st.lists(rounds, min_size=1, max_size=6),
    era=st.sampled_from(["modern", "legacy"]),
    user=st.sampled_from(["none", "accept", "decline", "alternate"]),
)
def test_only_valid_confirmed_approved_sets_are_deleted(
    served: ServedEmulator, script: list[tuple[str, list[int], str, int]], era: str, user: str
) -> None:
    emulator = served.emulator
    emulator.reset()
    newest = sorted(emulator.data.sessions, reverse=True)[:REAL]
    pool = [*newest, 1, 2]
    model = Model(existing=set(newest))
    answers: list[str] = []

    async def answer(_ctx: Any, _params: ElicitRequestParams) -> ElicitResult:
        action = (
            "accept" if user == "accept" or (user == "alternate" and len(answers) % 2 == 0) else "decline"
        )
        answers.append(action)
        return ElicitResult(action=action, content={"confirm": True} if action == "accept" else None)

    def approves() -> bool:
        if user == "none":
            return True
        model.questions += 1
        return user == "accept" or (user == "alternate" and model.questions % 2 == 1)

    async def run() -> None:
        callback = None if user == "none" else answer
        async with connect(server_for(served.url), era, elicitation_callback=callback) as client:
            for tool, indexes, attempt, pick in script:
                requested = [pool[i] for i in (indexes[:1] if tool == SINGLE else indexes)]
                await preview_and_confirm(client, tool, requested, attempt, pick)
                assert set(emulator.deleted_ids) == model.deleted
                assert len(emulator.deleted_ids) == len(model.deleted), "a session was deleted twice"
                destructive = [r for r in tm_requests(emulator) if r.method in ("DELETE", "POST")]
                assert len(destructive) == model.destructive_calls
                assert len(answers) == model.questions

    async def preview_and_confirm(
        client: Any, tool: str, requested: list[int], attempt: str, pick: int
    ) -> None:
        preview = await client.call_tool(tool, arguments(tool, requested))
        token = preview.structured_content.get("confirmation_token")
        present = frozenset(requested) & model.existing
        assert (token is not None) == bool(present)
        if token:
            model.issued.append(Issued(tool, present, token))
        if attempt == "none":
            return
        if attempt == "all":
            result = await client.call_tool(BULK, {"all": True, "confirm": True, "confirmation_token": token})
            assert result.is_error  # delete-all is not enabled on this server
            return
        ids, valid = sorted(present or requested), False
        spent: Issued | None = model.issued[-1] if token else None
        if attempt == "exact":
            valid = token is not None
        elif attempt == "stale" and model.issued:
            spent = model.issued[pick % len(model.issued)]
            tool, ids, token, valid = spent.tool, sorted(spent.ids), spent.token, not spent.used
        elif attempt == "requested_ids":
            ids, valid = requested, token is not None and frozenset(requested) == present
        elif attempt == "other_tool":
            tool = BULK if tool == SINGLE else SINGLE
        else:
            token = forge(attempt, tool, ids, token)
        result = await client.call_tool(
            tool, {**arguments(tool, ids), "confirm": True, "confirmation_token": token}
        )
        still_there = frozenset(ids) & model.existing
        if valid and still_there and spent is not None:
            spent.used = True
        if valid and still_there and approves():
            model.deleted |= still_there
            model.existing -= still_there
            model.destructive_calls += 1
            assert result.structured_content["deleted"] is True
        else:
            assert result.is_error or result.structured_content["deleted"] is False

    anyio.run(run)
    event("something was deleted" if model.deleted else "nothing was deleted")
    event(
        f"the user was asked {min(model.questions, 2)}+ times"
        if model.questions
        else "the user was not asked"
    )


def arguments(tool: str, ids: list[int]) -> dict[str, Any]:
    return {"id": ids[0]} if tool == SINGLE else {"ids": ids}


def forge(kind: str, tool: str, ids: list[int], token: str | None) -> str | None:
    target = Target.of_ids(ids)
    if kind == "expired":
        # Right key, right tool, right ids, but issued 11 minutes ago.
        past = Confirmations(SECRET.encode(), ttl_seconds=600, clock=lambda: time.time() - 660)
        return past.issue(tool, target).token
    if kind == "stranger":
        return Confirmations(b"another-secret", ttl_seconds=600).issue(tool, target).token
    if kind == "tampered" and token:
        return token[:-3] + ("AAA" if token[-3:] != "AAA" else "BBB")
    return None if kind == "missing" else "v1.not-a.token"
