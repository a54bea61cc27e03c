"""Hypothesis fuzzing of every tool's arguments through the MCP client: wrong types, bounds, unicode, nulls,
extra keys. No crash, no traceback, no TextMagic call for invalid input, nothing deleted."""

from __future__ import annotations

from typing import Any

import anyio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from server.state.settings import load_settings
from server.wiring.app import SessionsServer, build_server
from tests.helpers import API_KEY, TOOL_NAMES, USERNAME, ServedEmulator, connect, text_of, tm_requests

ARGUMENT_NAMES = [
    "id",
    "ids",
    "page",
    "limit",
    "statuses",
    "include_deleted",
    "all",
    "confirm",
    "confirmation_token",
    "since",
    "until",
    "timezone",
    "text",
    "source",
    "destination",
    "with_stats",
    "sort",
    "group_by",
    "failed_limit",
    "exclude_delivered_later",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.integers(min_value=-3, max_value=103),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(
        ["d", "f", "x", "D", "1", "true", "null", "[1, 2]", "v1.a.b", "\u202e", "0", "O", "t", "country"]
    ),
    st.sampled_from(["2026-11-19", "2026-11-19T09:00", "2026-02-30", "Europe/Berlin", "Mars/Base", "../etc"]),
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
keys = st.one_of(
    st.sampled_from(ARGUMENT_NAMES), st.sampled_from(["session_id", "ID", "extra", ""]), st.text(max_size=8)
)
arguments = st.dictionaries(keys, values, max_size=6)

_servers: dict[str, SessionsServer] = {}


def server_for(url: str) -> SessionsServer:
    if url not in _servers:
        _servers[url] = build_server(
            load_settings(username=USERNAME, api_key=API_KEY, base_url=url, rate_limit=1000, retry_attempts=1)
        )
    return _servers[url]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tool=st.sampled_from(sorted(TOOL_NAMES)), args=arguments, era=st.sampled_from(["modern", "legacy"]))
def test_any_arguments_get_an_answer_never_a_crash(
    served: ServedEmulator, tool: str, args: dict[str, Any], era: str
) -> None:
    emulator = served.emulator
    emulator.reset()

    async def run() -> Any:
        async with connect(server_for(served.url), era) as client:
            return await client.call_tool(tool, args)

    result = anyio.run(run)
    text = text_of(result)
    assert text, "every answer says something"
    assert "Traceback" not in text
    assert text != f"Error executing tool {tool}", "an unexpected crash, not an explained error"
    if "Invalid arguments" in text:
        assert tm_requests(emulator) == [], "invalid input must not reach TextMagic"
    assert emulator.deleted_ids == [] and not any(
        r.method in ("DELETE", "POST") for r in tm_requests(emulator)
    )
