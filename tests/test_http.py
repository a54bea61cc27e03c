"""The streamable HTTP transport over real HTTP on 127.0.0.1: tokens, Host/Origin, health, replicas, shutdown."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import httpx2
import pytest
from mcp_types import ElicitRequestParams, ElicitResult, InputRequiredResult

from server.sandbox import Emulator
from tests.helpers import (
    API_KEY,
    DELETE_TOOLS,
    TOKEN,
    TOOL_NAMES,
    USERNAME,
    HttpProcess,
    ServedEmulator,
    User,
    http_processes,
    http_server,
    mcp_client,
    newest,
    serve_on_loopback,
    shell_environment,
    text_of,
    tm_requests,
)

pytestmark = pytest.mark.anyio

SECRET = "replica-shared-secret-0123456789abcdef"
JSON_RPC = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@pytest.fixture(scope="module")
def guarded(served: ServedEmulator) -> Iterator[str]:
    """One server for the tests that only knock at its door: tokens, Host and Origin names of its own."""
    extra = {"allowed_hosts": "mcp.internal.example", "allowed_origins": "https://assistant.example"}
    with http_server(served, **extra) as url:
        yield url


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_tools_over_http_with_a_token(guarded: str, emulator: Emulator, mode: str) -> None:
    [session_id] = newest(emulator)
    async with mcp_client(guarded, mode) as client:
        assert {tool.name for tool in (await client.list_tools()).tools} == TOOL_NAMES
        stat = await client.call_tool("get_message_session_stat", {"id": session_id})
        preview = await client.call_tool("delete_message_session", {"id": session_id})
        done = await client.call_tool(
            "delete_message_session",
            {
                "id": session_id,
                "confirm": True,
                "confirmation_token": preview.structured_content["confirmation_token"],
            },
        )
        assert client.protocol_version == ("2026-07-28" if mode == "auto" else "2025-11-25")
    assert not stat.is_error and stat.structured_content["all"] >= 1
    assert done.structured_content["deleted"] is True and emulator.deleted_ids == [session_id]


@pytest.mark.parametrize(
    ("authorization", "error"),
    [
        (None, "unauthorized"),
        ("Bearer wrong-token", "invalid_token"),
        (f"Basic {TOKEN}", "invalid_token"),
        ("Bearer", "unauthorized"),
    ],
)
async def test_requests_without_the_token_get_401(
    guarded: str, emulator: Emulator, authorization: str | None, error: str
) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "delete_message_sessions_bulk", "arguments": {"all": True}},
    }
    headers = JSON_RPC | ({"Authorization": authorization} if authorization else {})
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{guarded}/mcp", json=call, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.json()["error"] == error
    assert TOKEN not in response.text
    assert tm_requests(emulator) == []


async def test_sdk_client_with_a_wrong_token_cannot_connect(guarded: str, emulator: Emulator) -> None:
    # The SDK reports a refused connection as an error response (the status itself is tested above).
    with pytest.raises(Exception, match=r"unhandled errors|error response"):
        async with mcp_client(guarded, token="wrong") as client:
            await client.list_tools()
    assert tm_requests(emulator) == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example:8000"}, 421),
        ({"Origin": "http://evil.example"}, 403),
        ({"Host": "mcp.internal.example", "Origin": "https://assistant.example"}, 200),
        ({"Origin": "http://localhost:3000"}, 200),
    ],
)
async def test_host_and_origin_are_checked(guarded: str, headers: dict[str, str], status: int) -> None:
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    base = JSON_RPC | {"Authorization": f"Bearer {TOKEN}", "MCP-Protocol-Version": "2025-11-25"}
    async with httpx2.AsyncClient() as http:
        response = await http.post(f"{guarded}/mcp", json=listing, headers={**base, **headers})
    assert response.status_code == status
    if status == 200:
        assert {tool["name"] for tool in response.json()["result"]["tools"]} == TOOL_NAMES


async def test_one_log_line_per_call_without_arguments(
    guarded: str, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    [session_id] = newest(emulator)
    caplog.set_level(logging.INFO, logger="server.calls")
    async with mcp_client(guarded) as client:
        await client.call_tool("get_message_session", {"id": session_id})
        await client.call_tool("get_message_session", {"id": 31337})
        await client.call_tool("get_message_session", {"id": 0})
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "server.calls"]
    assert [(line["tool"], line["outcome"], line["textmagic_status"]) for line in lines] == [
        ("get_message_session", "ok", [200]),
        ("get_message_session", "error", [404]),
        ("get_message_session", "error", []),
    ]
    assert all(isinstance(line["duration_ms"], float) for line in lines)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (str(session_id), "31337", API_KEY, TOKEN):
        assert secret not in logged


async def test_read_only_over_http(served: ServedEmulator, emulator: Emulator) -> None:
    [session_id] = newest(emulator)
    with http_server(served, read_only=True) as url:
        async with mcp_client(url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            refused = await client.call_tool("delete_message_session", {"id": session_id})
    assert names == TOOL_NAMES - DELETE_TOOLS
    assert refused.is_error and "read-only" in text_of(refused)
    assert tm_requests(emulator) == []


async def test_health_and_readiness(served: ServedEmulator, emulator: Emulator) -> None:
    """Finding 7: every probe of /readyz started a TextMagic request, and it showed anyone the base URL. Probes
    now never call TextMagic: they report what this replica's own requests found."""
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with http_server(served) as url, http_server(served, api_key="revoked-key") as revoked:
        async with httpx2.AsyncClient() as http:
            health = await http.get(f"{url}/healthz")
            probes: list[httpx2.Response] = []
            async with anyio.create_task_group() as group:
                for _ in range(50):

                    async def probe() -> None:
                        probes.append(await http.get(f"{url}/readyz"))

                    group.start_soon(probe)
            checked = tm_requests(emulator)
            async with mcp_client(revoked) as client:
                refused = await client.call_tool("get_message_session", {"id": newest(emulator)[0]})
            failing = await http.get(f"{revoked}/readyz")
            explained = await http.get(f"{revoked}/readyz", headers=bearer)
    assert (health.status_code, health.json()["status"]) == (200, "ok") and health.json()["version"]
    assert {(p.status_code, p.text) for p in probes} == {
        (200, '{"status":"ready","textmagic":"unknown","deletes":"available"}')
    }
    assert checked == [], "probes must not call TextMagic"
    assert refused.is_error
    # Credentials TextMagic refuses are reported, not routed on: every replica shares them.
    assert (failing.status_code, failing.json()) == (
        200,
        {"status": "ready", "textmagic": "failing", "deletes": "available"},
    )
    assert served.url not in failing.text and "127.0.0.1" not in failing.text
    problem = explained.json()["textmagic_problem"]
    assert "TEXTMAGIC_API_KEY" in problem and "revoked-key" not in explained.text


async def test_who_can_be_asked_over_stateless_http(served: ServedEmulator, emulator: Emulator) -> None:
    first, second = newest(emulator, 2)
    user = User("accept")
    with http_server(served, require_human_confirmation=True) as url:
        async with mcp_client(url, "auto", elicitation_callback=user) as client:
            preview = await client.call_tool("delete_message_session", {"id": first})
            token = preview.structured_content["confirmation_token"]
            done = await client.call_tool(
                "delete_message_session", {"id": first, "confirm": True, "confirmation_token": token}
            )
        async with mcp_client(url, "legacy", elicitation_callback=user) as client:
            refused = await client.call_tool("delete_message_session", {"id": second})
    assert done.structured_content["deleted"] is True and len(user.questions) == 1
    # No channel back to a 2025-11-25 client over stateless HTTP: it cannot be asked, so it is refused.
    assert refused.is_error and "TEXTMAGIC_REQUIRE_HUMAN_CONFIRMATION" in text_of(refused)
    assert emulator.deleted_ids == [first]


async def test_replicas_share_tokens_and_the_users_answer(
    served: ServedEmulator, emulator: Emulator, redis_url: str
) -> None:
    """A preview on one replica, a 2026-07-28 elicitation round asked by it and answered to another; a process
    with another secret refuses the token."""
    [session_id] = newest(emulator)

    async def never(_ctx: Any, _params: ElicitRequestParams) -> ElicitResult:
        raise AssertionError("this test answers by hand")

    with http_processes(
        served, SECRET, SECRET, "a-different-secret-0123456789abcdef", TEXTMAGIC_REDIS_URL=redis_url
    ) as (
        one,
        two,
        stranger,
    ):
        async with mcp_client(one.url, elicitation_callback=never) as client:
            preview = await client.call_tool("delete_message_session", {"id": session_id})
            arguments = {
                "id": session_id,
                "confirm": True,
                "confirmation_token": preview.structured_content["confirmation_token"],
            }
            asked = await client.session.call_tool(
                "delete_message_session", arguments, allow_input_required=True
            )
        async with mcp_client(stranger.url, mode="legacy") as client:
            refused = await client.call_tool("delete_message_session", arguments)
        assert isinstance(asked, InputRequiredResult) and asked.input_requests
        [(key, question)] = asked.input_requests.items()
        assert "Delete 1 session" in question.params.message
        answer = {key: ElicitResult(action="accept", content={"confirm": True})}
        async with mcp_client(two.url, elicitation_callback=never) as client:
            done = await client.session.call_tool(
                "delete_message_session",
                arguments,
                input_responses=answer,
                request_state=asked.request_state,
                allow_input_required=True,
            )
    assert refused.is_error and "not issued by this server" in text_of(refused)
    assert not isinstance(done, InputRequiredResult)
    assert done.structured_content["deleted"] is True and emulator.deleted_ids == [session_id]


async def test_sigterm_lets_the_call_in_flight_finish(served: ServedEmulator, emulator: Emulator) -> None:
    [session_id] = newest(emulator)
    emulator.latency = 0.3
    server = HttpProcess(served)
    results: list[Any] = []
    try:
        # The server is gone after the call: no goodbye request to it on close.
        async with (
            mcp_client(server.url, terminate_on_close=False) as client,
            anyio.create_task_group() as group,
        ):
            # Listed first: the client checks results against the tools' schemas, and the server will be gone.
            await client.list_tools()

            async def call() -> None:
                results.append(await client.call_tool("get_message_session", {"id": session_id}))

            group.start_soon(call)
            # TextMagic (the emulator) now holds the request: the call is in flight.
            assert await anyio.to_thread.run_sync(emulator.wait_for_requests, 1)
            server.process.send_signal(signal.SIGTERM)
    finally:
        code = server.stop()
    [result] = results
    assert not result.is_error and result.structured_content["id"] == session_id
    # uvicorn re-raises the SIGTERM once it has shut down gracefully; systemd counts that as a clean stop.
    assert code in (0, -signal.SIGTERM)
    log = "".join(server.lines)
    assert "closed the TextMagic client" in log
    assert log.index('"outcome": "ok"') < log.index("closed the TextMagic client")


async def test_worker_factory_reads_the_environment(
    served: ServedEmulator, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server.wiring.http import app_from_environment

    for name, value in {
        "TEXTMAGIC_USERNAME": USERNAME,
        "TEXTMAGIC_API_KEY": API_KEY,
        "TEXTMAGIC_BASE_URL": served.url,
        "TEXTMAGIC_MCP_TOKENS": TOKEN,
        "TEXTMAGIC_READ_ONLY": "true",
        # The factory cannot see where uvicorn listens, so it takes no Host for local unless listed.
        "TEXTMAGIC_ALLOWED_HOSTS": "127.0.0.1:*",
    }.items():
        monkeypatch.setenv(name, value)
    url, server, thread = serve_on_loopback(app_from_environment(), lifespan="on")
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    authorised = JSON_RPC | {"Authorization": f"Bearer {TOKEN}", "MCP-Protocol-Version": "2025-11-25"}
    try:
        async with mcp_client(url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
        async with httpx2.AsyncClient() as http:
            unauthorised = await http.post(f"{url}/mcp", json={})
            posing_as_local = await http.post(
                f"{url}/mcp", json=listing, headers=authorised | {"Host": "localhost"}
            )
            local_origin = await http.post(
                f"{url}/mcp", json=listing, headers=authorised | {"Origin": "http://localhost:3000"}
            )
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert names == TOOL_NAMES - DELETE_TOOLS
    assert unauthorised.status_code == 401
    assert (posing_as_local.status_code, local_origin.status_code) == (421, 403)


@pytest.mark.parametrize(
    "options",
    [
        # Refused as the app loads, before uvicorn binds: nothing ever listens on 0.0.0.0 here.
        ["--host", "0.0.0.0"],  # noqa: S104
        # Each worker is refused, and the supervisor is stopped rather than start worker after worker.
        ["--workers", "2", "--host", "127.0.0.1"],
    ],
)
def test_worker_factory_never_serves_without_authentication(options: list[str]) -> None:
    done = run_factory(*options, TEXTMAGIC_SANDBOX="true")
    assert "configuration error: refusing to serve HTTP" in done.stderr
    assert "Set TEXTMAGIC_MCP_TOKENS" in done.stderr and "Traceback" not in done.stderr
    assert "Application startup complete" not in done.stderr


def test_worker_factory_with_a_bad_configuration_says_what_to_fix() -> None:
    done = run_factory(TEXTMAGIC_USERNAME=USERNAME)
    assert done.returncode != 0
    assert "configuration error: TextMagic credentials are missing: set TEXTMAGIC_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


def run_factory(*options: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``uvicorn --factory server.wiring.http:app_from_environment`` on a free port, as an operator runs it."""
    factory = [sys.executable, "-m", "uvicorn", "--factory", "server.wiring.http:app_from_environment"]
    return subprocess.run(
        [*factory, "--port", "0", *options],
        env=shell_environment(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_lists_over_http_are_never_kept(served: ServedEmulator) -> None:
    # They differ by token and narrowing, which a client's cache cannot tell apart (a step-up widens them).
    with http_server(served) as url:
        async with mcp_client(url, "2026-07-28") as client:
            listed = [await client.list_tools(), await client.list_prompts()]
    assert {(result.ttl_ms, result.cache_scope) for result in listed} == {(0, "private")}
