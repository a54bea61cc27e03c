"""The streamable HTTP transport over real HTTP on 127.0.0.1: tokens, Host/Origin, health, replicas, shutdown."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitRequestParams, ElicitResult, InputRequiredResult

from server.app import build_server
from server.config import load_settings
from server.http import http_app
from server.sandbox import Emulator
from tests.conftest import (
    API_KEY,
    USERNAME,
    ServedEmulator,
    serve_on_loopback,
    shell_environment,
    text_of,
    tm_requests,
)
from tests.test_stdio import TOOL_NAMES, console_script

pytestmark = pytest.mark.anyio

TOKEN = "mcp-token-7f3e91"
SECRET = "replica-shared-secret"


@contextmanager
def http_server(served: ServedEmulator, **overrides: Any) -> Iterator[str]:
    """The server's HTTP app under uvicorn on a free loopback port; yields the base URL."""
    defaults = {"username": USERNAME, "api_key": API_KEY, "mcp_tokens": TOKEN}
    settings = load_settings(base_url=served.url, transport="http", **(defaults | overrides))
    url, server, thread = serve_on_loopback(http_app(build_server(settings), settings), lifespan="on")
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@asynccontextmanager
async def mcp_client(
    url: str, mode: str = "auto", token: str | None = TOKEN, terminate_on_close: bool = True, **options: Any
) -> AsyncIterator[Client]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers) as http:
        transport = streamable_http_client(
            f"{url}/mcp", http_client=http, terminate_on_close=terminate_on_close
        )
        async with Client(transport, mode=mode, **options) as client:
            yield client


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_tools_over_http_with_a_token(served: ServedEmulator, emulator: Emulator, mode: str) -> None:
    session_id = max(emulator.data.sessions)
    with http_server(served) as url:
        async with mcp_client(url, mode) as client:
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
            expected = "2026-07-28" if mode == "auto" else "2025-11-25"
            assert client.protocol_version == expected
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
    served: ServedEmulator, emulator: Emulator, authorization: str | None, error: str
) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "delete_message_sessions_bulk", "arguments": {"all": True}},
    }
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if authorization:
        headers["Authorization"] = authorization
    with http_server(served) as url:
        async with httpx2.AsyncClient() as http:
            response = await http.post(f"{url}/mcp", json=call, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.json()["error"] == error
    assert TOKEN not in response.text
    assert tm_requests(emulator) == []


async def test_sdk_client_with_a_wrong_token_cannot_connect(
    served: ServedEmulator, emulator: Emulator
) -> None:
    # The SDK reports a refused connection as an error response (the status itself is tested above).
    with http_server(served) as url, pytest.raises(Exception, match=r"unhandled errors|error response"):
        async with mcp_client(url, token="wrong") as client:
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
async def test_host_and_origin_are_checked(
    served: ServedEmulator, emulator: Emulator, headers: dict[str, str], status: int
) -> None:
    listing = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    base = {
        "Authorization": f"Bearer {TOKEN}",
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    extra = {"allowed_hosts": "mcp.internal.example", "allowed_origins": "https://assistant.example"}
    with http_server(served, **extra) as url:
        async with httpx2.AsyncClient() as http:
            response = await http.post(f"{url}/mcp", json=listing, headers={**base, **headers})
    assert response.status_code == status
    if status == 200:
        assert {tool["name"] for tool in response.json()["result"]["tools"]} == TOOL_NAMES


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"read_only": True}, "read-only"),
        ({"tools": "get_message_session,get_all_message_sessions"}, "not enabled"),
    ],
)
async def test_read_only_and_allow_list_over_http(
    served: ServedEmulator, emulator: Emulator, settings: dict[str, Any], reason: str
) -> None:
    session_id = max(emulator.data.sessions)
    with http_server(served, **settings) as url:
        async with mcp_client(url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
            refused = await client.call_tool("delete_message_session", {"id": session_id})
    assert not names & {"delete_message_session", "delete_message_sessions_bulk"}
    assert refused.is_error and reason in text_of(refused)
    assert tm_requests(emulator) == []


async def test_health_and_readiness(served: ServedEmulator, emulator: Emulator) -> None:
    with http_server(served) as url:
        async with httpx2.AsyncClient() as http:
            health = await http.get(f"{url}/healthz")
            assert tm_requests(emulator) == [], "/healthz must not call TextMagic"
            ready = await http.get(f"{url}/readyz")
            again = await http.get(f"{url}/readyz")
    assert (health.status_code, health.json()["status"]) == (200, "ok") and health.json()["version"]
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
    assert again.status_code == 200
    # One cheap call, kept for a while: the second probe did not reach TextMagic.
    assert [(r.path, r.query) for r in tm_requests(emulator)] == [
        ("/api/v2/sessions", {"page": "1", "limit": "1"})
    ]


async def test_not_ready_with_bad_credentials(served: ServedEmulator, emulator: Emulator) -> None:
    with http_server(served, api_key="revoked-key") as url:
        async with httpx2.AsyncClient() as http:
            ready = await http.get(f"{url}/readyz")
    assert ready.status_code == 503
    assert ready.json()["status"] == "not ready"
    assert "TEXTMAGIC_API_KEY" in ready.json()["reason"] and "revoked-key" not in ready.text


async def test_one_log_line_per_call_without_arguments(
    served: ServedEmulator, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    session_id = max(emulator.data.sessions)
    caplog.set_level(logging.INFO, logger="server.calls")
    with http_server(served) as url:
        async with mcp_client(url) as client:
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
    assert (
        str(session_id) not in logged
        and "31337" not in logged
        and API_KEY not in logged
        and TOKEN not in logged
    )


class HttpProcess:
    """The installed script serving HTTP in a subprocess; its stderr is collected in the background."""

    def __init__(self, served: ServedEmulator, **env: str) -> None:
        settings = {
            "TEXTMAGIC_USERNAME": USERNAME,
            "TEXTMAGIC_API_KEY": API_KEY,
            "TEXTMAGIC_BASE_URL": served.url,
            "TEXTMAGIC_MCP_TOKENS": TOKEN,
        }
        self.process = subprocess.Popen(
            [console_script(), "--transport", "http", "--port", "0"],
            env=shell_environment(**settings, **env),
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.process.stderr is not None
        self.lines: list[str] = []
        # The server prints this line once its socket listens; reading it is the only wait.
        for line in self.process.stderr:
            self.lines.append(line)
            if "serving MCP at " in line:
                self.url = line.split("serving MCP at ")[1].strip().removesuffix("/mcp")
                break
        else:
            raise AssertionError("the server exited before serving: " + "".join(self.lines))
        self._drain = threading.Thread(target=self._collect, daemon=True)
        self._drain.start()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        self.lines.extend(self.process.stderr)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self._drain.join(timeout=10)
        return code


@contextmanager
def http_processes(served: ServedEmulator, *secrets: str) -> Iterator[list[HttpProcess]]:
    processes = [HttpProcess(served, TEXTMAGIC_CONFIRMATION_SECRET=secret) for secret in secrets]
    try:
        yield processes
    finally:
        for process in processes:
            process.stop()


@pytest.mark.parametrize(("second_secret", "works"), [(SECRET, True), ("a-different-secret", False)])
async def test_preview_on_one_replica_confirm_on_another(
    served: ServedEmulator, emulator: Emulator, second_secret: str, works: bool
) -> None:
    session_id = max(emulator.data.sessions)
    with http_processes(served, SECRET, second_secret) as (one, two):
        async with mcp_client(one.url) as client:
            preview = await client.call_tool("delete_message_session", {"id": session_id})
        token = preview.structured_content["confirmation_token"]
        async with mcp_client(two.url, mode="legacy") as client:
            confirmed = await client.call_tool(
                "delete_message_session", {"id": session_id, "confirm": True, "confirmation_token": token}
            )
    if works:
        assert confirmed.structured_content["deleted"] is True and emulator.deleted_ids == [session_id]
    else:
        assert confirmed.is_error and "not issued by this server" in text_of(confirmed)
        assert emulator.deleted_ids == []


async def test_the_users_answer_may_reach_another_replica(served: ServedEmulator, emulator: Emulator) -> None:
    """A 2026-07-28 elicitation round: asked by one replica, answered to the other."""
    session_id = max(emulator.data.sessions)

    async def never(_ctx: Any, _params: ElicitRequestParams) -> ElicitResult:
        raise AssertionError("this test answers by hand")

    with http_processes(served, SECRET, SECRET) as (one, two):
        async with mcp_client(one.url, elicitation_callback=never) as client:
            token = (await client.call_tool("delete_message_session", {"id": session_id})).structured_content[
                "confirmation_token"
            ]
            arguments = {"id": session_id, "confirm": True, "confirmation_token": token}
            asked = await client.session.call_tool(
                "delete_message_session", arguments, allow_input_required=True
            )
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
    assert not isinstance(done, InputRequiredResult)
    assert done.structured_content["deleted"] is True and emulator.deleted_ids == [session_id]


async def test_sigterm_lets_the_call_in_flight_finish(served: ServedEmulator, emulator: Emulator) -> None:
    session_id = max(emulator.data.sessions)
    emulator.latency = 1.0
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
    from server.http import app_from_environment

    for name, value in {
        "TEXTMAGIC_USERNAME": USERNAME,
        "TEXTMAGIC_API_KEY": API_KEY,
        "TEXTMAGIC_BASE_URL": served.url,
        "TEXTMAGIC_MCP_TOKENS": TOKEN,
        "TEXTMAGIC_READ_ONLY": "true",
    }.items():
        monkeypatch.setenv(name, value)
    url, server, thread = serve_on_loopback(app_from_environment(), lifespan="on")
    try:
        async with mcp_client(url) as client:
            names = {tool.name for tool in (await client.list_tools()).tools}
        async with httpx2.AsyncClient() as http:
            unauthorised = await http.post(f"{url}/mcp", json={})
    finally:
        server.should_exit = True
        thread.join(timeout=30)
    assert names == TOOL_NAMES - {"delete_message_session", "delete_message_sessions_bulk"}
    assert unauthorised.status_code == 401


def test_worker_factory_with_a_bad_configuration_says_what_to_fix() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "server.http:app_from_environment", "--port", "0"],
        env=shell_environment(TEXTMAGIC_USERNAME=USERNAME),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "configuration error: TextMagic credentials are missing: set TEXTMAGIC_API_KEY" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(("mode", "asked"), [("auto", True), ("legacy", False)])
async def test_who_can_be_asked_over_stateless_http(
    served: ServedEmulator, emulator: Emulator, mode: str, asked: bool
) -> None:
    session_id = max(emulator.data.sessions)
    questions: list[str] = []

    async def user(_ctx: Any, params: ElicitRequestParams) -> ElicitResult:
        questions.append(params.message)
        return ElicitResult(action="accept", content={"confirm": True})

    with http_server(served, require_human_confirmation=True) as url:
        async with mcp_client(url, mode, elicitation_callback=user) as client:
            preview = await client.call_tool("delete_message_session", {"id": session_id})
            if asked:
                token = preview.structured_content["confirmation_token"]
                done = await client.call_tool(
                    "delete_message_session", {"id": session_id, "confirm": True, "confirmation_token": token}
                )
    if asked:
        assert done.structured_content["deleted"] is True and len(questions) == 1
    else:
        # No channel back to a 2025-11-25 client over stateless HTTP: it cannot be asked, so it is refused.
        assert preview.is_error and "TEXTMAGIC_REQUIRE_HUMAN_CONFIRMATION" in text_of(preview)
        assert questions == [] and emulator.deleted_ids == []
