"""Every failure is an isError result with a clear text; none carries the API key or reaches TextMagic when invalid."""

from __future__ import annotations

import base64
import socket
from typing import Any

import pytest

from server.sandbox import Emulator
from tests.helpers import API_KEY, USERNAME, connect, text_of, tm_requests

pytestmark = pytest.mark.anyio

SECRETS = (API_KEY, base64.b64encode(f"{USERNAME}:{API_KEY}".encode()).decode())


async def failing_call(server: Any, tool: str, arguments: dict[str, Any], era: str = "modern") -> str:
    async with connect(server, era) as client:
        result = await client.call_tool(tool, arguments)
    assert result.is_error
    text = text_of(result)
    assert "Traceback" not in text
    for secret in SECRETS:
        assert secret not in text
        assert secret not in str(result.model_dump())
    return text


async def test_wrong_credentials(make_server: Any, era: str) -> None:
    text = await failing_call(make_server(api_key="wrong-key"), "get_all_message_sessions", {}, era)
    assert "401" in text and "TEXTMAGIC_USERNAME" in text and "TEXTMAGIC_API_KEY" in text
    assert "Wrong username and token combination." in text
    assert "wrong-key" not in text


async def test_missing_session(make_server: Any, era: str) -> None:
    text = await failing_call(make_server(), "get_message_session_stat", {"id": 424242}, era)
    assert "Session 424242 does not exist" in text and "get_all_message_sessions" in text


async def test_validation_errors_from_textmagic(make_server: Any, emulator: Emulator) -> None:
    body = {
        "code": 400,
        "message": "Validation Failed",
        "errors": {"common": ["Something is off."], "fields": {"statuses": ["Not a valid choice."]}},
    }
    emulator.fail_next(400, body)
    text = await failing_call(make_server(), "get_messages_by_session_id", {"id": 1, "statuses": ["d"]})
    assert "rejected the request (400)" in text
    assert "statuses: Not a valid choice." in text and "Something is off." in text


@pytest.mark.parametrize(
    ("status", "expected"), [(500, "internal error"), (503, "maintenance"), (502, "internal error")]
)
async def test_temporary_failures_say_so(
    make_server: Any, emulator: Emulator, status: int, expected: str
) -> None:
    emulator.fail_next(status, times=10)
    text = await failing_call(make_server(retry_attempts=2), "get_all_message_sessions", {})
    assert expected in text and "temporary" in text and "Tried 2 times" in text
    assert len(tm_requests(emulator)) == 2


async def test_unexpected_body(make_server: Any, emulator: Emulator) -> None:
    emulator.fail_next(200, {"unexpected": True})
    text = await failing_call(make_server(), "get_all_message_sessions", {})
    assert "cannot read" in text and "GET /api/v2/sessions" in text


async def test_unreachable_textmagic_names_the_base_url(make_server: Any) -> None:
    # A port that was free a moment ago and has no listener: connection refused, on loopback only.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    text = await failing_call(make_server(base_url=url, retry_attempts=2), "get_message_session", {"id": 1})
    assert f"Could not reach TextMagic at {url}" in text and "TEXTMAGIC_BASE_URL" in text
    assert "Tried 2 times" in text and "trying again later is safe" in text


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("get_message_session", {"id": 0}, "id: Input should be greater than or equal to 1 (got 0)"),
        ("get_message_session", {}, "id is required"),
        ("get_message_session", {"id": "abc"}, "id: Input should be a valid integer"),
        ("get_message_session", {"id": 1, "session": 2}, "unknown argument 'session'"),
        (
            "get_all_message_sessions",
            {"limit": 101},
            "limit: Input should be less than or equal to 100 (got 101)",
        ),
        ("get_all_message_sessions", {"limit": 0}, "limit: Input should be greater than or equal to 1"),
        ("get_messages_by_session_id", {"id": 1, "statuses": ["x"]}, "statuses.0: Input should be 'q'"),
        (
            "get_messages_by_session_id",
            {"id": 1, "statuses": []},
            "statuses: List should have at least 1 item",
        ),
        ("delete_message_sessions_bulk", {"ids": [1], "all": True}, "either ids or all=true, not both"),
        (
            "delete_message_sessions_bulk",
            {"ids": list(range(1, 102))},
            "ids: List should have at most 100 items",
        ),
        (
            "delete_message_sessions_bulk",
            {"ids": [1, -5]},
            "ids.1: Input should be greater than or equal to 1",
        ),
        ("delete_message_session", {"id": 2**60}, "id: no id is larger than 9007199254740991"),
    ],
)
async def test_invalid_arguments_never_reach_textmagic(
    make_server: Any, emulator: Emulator, era: str, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    text = await failing_call(make_server(), tool, arguments, era)
    assert expected in text
    assert tm_requests(emulator) == []
    assert emulator.deleted_ids == []


async def test_a_burst_of_429s_is_waited_out_not_failed(make_server: Any, emulator: Emulator) -> None:
    # Refused for the rate limit, a request was not carried out: it is tried again for as long as the retry
    # budget lasts, however many attempts that takes, while the pacer slows down.
    emulator.fail_next(429, times=6)
    async with connect(make_server(retry_attempts=2)) as client:
        result = await client.call_tool("get_all_message_sessions", {})
    assert not result.is_error, text_of(result)
    assert len(tm_requests(emulator)) == 7


async def test_a_hold_off_longer_than_a_call_waits_fails_at_once_saying_when(
    make_server: Any, emulator: Emulator
) -> None:
    emulator.fail_next(429, headers={"Retry-After": "120"})
    server = make_server(retry_budget=2, fresh=True)
    async with connect(server) as client:
        first = await client.call_tool("get_all_message_sessions", {})
        # The whole process holds off now: the next call is not sent, and says when to try again.
        second = await client.call_tool("get_message_session", {"id": 1})
    assert first.is_error and "TextMagic asked to wait 120 s" in text_of(first)
    assert second.is_error and "asked to wait 12" in text_of(second) and "try again in" in text_of(second)
    assert len(tm_requests(emulator)) == 1
