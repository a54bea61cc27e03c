"""What the tests share: the test account, clients of every transport, servers in subprocesses, readers of results.

Test modules import from here, never from each other; fixtures live in conftest.py.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ElicitRequestParams, ElicitResult

from server.sandbox import Emulator, RecordedRequest
from server.state.settings import load_settings
from server.textmagic import RateLimiter, RetryPolicy, TextMagicClient
from server.wiring.app import build_server
from server.wiring.http import http_app, listening_socket

# Recognisable on purpose: tests grep every output for them.
USERNAME = "acme-ops"
API_KEY = "tmkey-SECRET-5f2c9a1e77d04b"
TOKEN = "mcp-token-7f3e91"
ANCHOR = datetime(2026, 11, 20, tzinfo=UTC)
ERAS = ["modern", "legacy"]
# Retries as the server makes them, with waits short enough for a test.
QUICK_RETRY = {"base_delay": 0.005, "max_delay": 0.02}

READ_TOOLS = {
    "get_all_message_sessions",
    "get_message_session",
    "get_message_session_stat",
    "get_messages_by_session_id",
    "find_message_sessions",
    "get_delivery_report",
    "get_recipients",
}
DELETE_TOOLS = {"delete_message_session", "delete_message_sessions_bulk", "delete_message_sessions_matching"}
TOOL_NAMES = READ_TOOLS | DELETE_TOOLS


@dataclass
class ServedEmulator:
    emulator: Emulator
    url: str


def serve_on_loopback(
    app: Any, lifespan: str = "off", **options: Any
) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port; the socket is listening before this returns.

    ``options`` go to uvicorn's Config: ``ssl_certfile`` and ``ssl_keyfile`` serve HTTPS.
    """
    # Bound and listening now: connections queue in the backlog until uvicorn accepts them, so no wait.
    return serve_at(listening_socket("127.0.0.1", 0), app, lifespan, **options)


def serve_at(
    sock: socket.socket, app: Any, lifespan: str = "off", **options: Any
) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve ``app`` with uvicorn on ``sock``, a listening socket on 127.0.0.1 (bound first when the app must
    know its own URL)."""
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, log_config=None, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    scheme = "https" if "ssl_certfile" in options else "http"
    return f"{scheme}://127.0.0.1:{sock.getsockname()[1]}", server, thread


@asynccontextmanager
async def connect(server: Any, era: str = "modern", **options: Any) -> AsyncIterator[Client]:
    """An in-memory SDK client of ``server`` on the 2026-07-28 protocol ("modern") or 2025-11-25 ("legacy")."""
    async with Client(server, mode="legacy" if era == "legacy" else "auto", **options) as client:
        yield client


async def call(server: Any, tool: str, arguments: dict[str, Any], era: str = "modern") -> CallToolResult:
    async with connect(server, era) as client:
        return await client.call_tool(tool, arguments)


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def tm_requests(emulator: Emulator) -> list[RecordedRequest]:
    return [r for r in emulator.requests if r.path.startswith("/api/v2/")]


def sent(emulator: Emulator, method: str) -> int:
    return sum(1 for r in tm_requests(emulator) if r.method == method)


def deletions(emulator: Emulator) -> list[tuple[str, str, Any]]:
    return [(r.method, r.path, r.body) for r in tm_requests(emulator) if r.method in ("DELETE", "POST")]


def newest(emulator: Emulator, count: int = 1) -> list[int]:
    return sorted(emulator.data.sessions, reverse=True)[:count]


def shell_environment(**extra: str) -> dict[str, str]:
    """The environment a fresh shell would give a subprocess: no TEXTMAGIC_* variables from the test run."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TEXTMAGIC_")} | extra


def textmagic_client(
    base_url: str, *, retry: RetryPolicy | None = None, timeout: float = 5, **options: Any
) -> TextMagicClient:
    """The project's TextMagic client with the test account, quick retries and no practical rate limit."""
    return TextMagicClient(
        base_url=base_url,
        username=USERNAME,
        api_key=API_KEY,
        timeout=timeout,
        pacer=RateLimiter(1000),
        retry=retry or RetryPolicy(**QUICK_RETRY),
        **options,
    )


class User:
    """An elicitation callback: answers every question with ``action`` and records what it was asked."""

    def __init__(self, action: str, content: dict[str, Any] | None = None) -> None:
        self.action = action
        self.content = content if content is not None else {"confirm": True}
        self.questions: list[str] = []

    async def __call__(self, _ctx: Any, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        return ElicitResult(action=self.action, content=self.content if self.action == "accept" else None)


async def preview_token(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    preview = await client.call_tool(tool, arguments)
    assert preview.structured_content is not None, text_of(preview)
    token: str = preview.structured_content["confirmation_token"]
    return token


async def preview_then_confirm(client: Client, tool: str, arguments: dict[str, Any]) -> CallToolResult:
    """A delete as the tools ask for it: the preview, then the same call confirmed with its token and ids."""
    preview = await client.call_tool(tool, arguments)
    assert not preview.is_error, text_of(preview)
    assert preview.structured_content is not None
    result = preview.structured_content
    confirming = {**arguments, "confirm": True, "confirmation_token": result["confirmation_token"]}
    if "ids" in arguments:
        # As the preview says: exactly the ids it lists, those that do not exist left out.
        confirming["ids"] = result["preview"]["ids"]
    return await client.call_tool(tool, confirming)


def console_script() -> str:
    script = Path(sys.executable).with_name("textmagic-sessions-mcp")
    if not script.exists():
        pytest.fail(f"{script} is missing: install the project first (pip install -e '.[dev]')")
    return str(script)


def run_script(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script as a user runs it, in a fresh shell's environment."""
    return subprocess.run(
        [console_script(), *args],
        env=shell_environment(**(env or {})),
        capture_output=True,
        text=True,
        timeout=60,
    )


def account_environment(served: ServedEmulator, **extra: str) -> dict[str, str]:
    """The variables that point the server at the test account on the emulator."""
    return {
        "TEXTMAGIC_USERNAME": USERNAME,
        "TEXTMAGIC_API_KEY": API_KEY,
        "TEXTMAGIC_BASE_URL": served.url,
        **extra,
    }


@asynccontextmanager
async def stdio_server(
    served: ServedEmulator, errlog: Any, mode: str = "auto", args: tuple[str, ...] = (), **env: str
) -> AsyncIterator[Client]:
    """The installed console script as a stdio subprocess on the test account, through the SDK's client."""
    params = StdioServerParameters(
        command=console_script(), args=list(args), env=shell_environment(**account_environment(served, **env))
    )
    async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
        yield client


@contextmanager
def http_server(served: ServedEmulator, **overrides: Any) -> Iterator[str]:
    """The server's HTTP app under uvicorn on a free loopback port; yields the base URL."""
    defaults = {"username": USERNAME, "api_key": API_KEY, "mcp_tokens": TOKEN}
    settings = load_settings(base_url=served.url, transport="http", **(defaults | overrides))
    url, server, thread = serve_on_loopback(
        http_app(build_server(settings), settings, on_loopback=True), lifespan="on"
    )
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@asynccontextmanager
async def mcp_client(
    url: str, mode: str = "auto", token: str | None = TOKEN, terminate_on_close: bool = True, **options: Any
) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP to ``url`` (the server's root), with a bearer token."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers) as http:
        transport = streamable_http_client(
            f"{url}/mcp", http_client=http, terminate_on_close=terminate_on_close
        )
        async with Client(transport, mode=mode, **options) as client:
            yield client


class HttpProcess:
    """The installed script serving HTTP in a subprocess; its stderr is collected in the background.

    ``serving()`` waits for the server to listen (the constructor does, unless told not to, so that several
    can start at once). ``open_files`` sets the process's file limit, as a small host would.
    """

    def __init__(
        self, served: ServedEmulator, *, wait: bool = True, open_files: int | None = None, **env: str
    ) -> None:
        def limit_open_files() -> None:
            assert open_files is not None
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

        self.process = subprocess.Popen(
            [console_script(), "--transport", "http", "--port", "0"],
            env=shell_environment(**account_environment(served, TEXTMAGIC_MCP_TOKENS=TOKEN, **env)),
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            preexec_fn=limit_open_files if open_files else None,
        )
        self.lines: list[str] = []
        self.url = ""
        if wait:
            self.serving()

    def serving(self) -> None:
        assert self.process.stderr is not None
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
        if self.url:
            self._drain.join(timeout=10)
        return code


@contextmanager
def http_processes(served: ServedEmulator, *secrets: str, **env: str) -> Iterator[list[HttpProcess]]:
    """One HTTP server process per confirmation secret, started together: replicas, when the secrets are equal
    (and ``env`` names the Redis they share)."""
    processes = [
        HttpProcess(served, wait=False, TEXTMAGIC_CONFIRMATION_SECRET=secret, **env) for secret in secrets
    ]
    try:
        for process in processes:
            process.serving()
        yield processes
    finally:
        for process in processes:
            process.stop()


def add_session(
    emulator: Emulator,
    session_id: int,
    start: datetime,
    *,
    title: str | None = None,
    text: str = "Made up for a test",
    source: str = "A",
    destination: str = "t",
    statuses: str = "d",
    country: str = "GB",
) -> dict[str, Any]:
    """A session on the emulator's account, as TextMagic would list it, with one message per status letter."""
    stamp = start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")
    messages = [
        {
            "id": session_id * 1000 + n,
            "receiver": f"44700{session_id % 10_000:04d}{n:03d}",
            "status": status,
            "text": text,
            "messageTime": stamp,
            "sessionId": session_id,
            "country": country,
            "price": 0.04,
            "partsCount": 1,
            "deleted": False,
            **({"rejectReason": "a"} if status == "j" else {}),
        }
        for n, status in enumerate(statuses)
    ]
    session = {
        "id": session_id,
        "startTime": stamp,
        "text": text,
        "title": title,
        "source": source,
        "destination": destination,
        "referenceId": None,
        "price": round(0.04 * len(messages), 4),
        "numbersCount": len(messages),
    }
    emulator.data.sessions[session_id] = session
    emulator.data.messages[session_id] = messages
    return session


def wait_until_says(process: subprocess.Popen[str], marker: str, what: str) -> str:
    """Read ``process``'s output up to the line saying ``marker`` (it says so once it listens: reading that line
    is the only wait), then keep draining it in the background; the line."""
    assert process.stdout is not None
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            threading.Thread(target=process.stdout.read, daemon=True).start()
            return line
    raise AssertionError(f"{what} did not start: " + "".join(seen))


def records(path: Path) -> list[dict[str, Any]]:
    """The audit records in the file at ``path``."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def required_service(name: str, install: str) -> str:
    """The path of ``name``; the test is skipped with a reason when it is missing, or fails when
    REQUIRE_TEST_SERVICES=1 (as .ci/run sets it, having installed what the tests need)."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed ({install}); .ci/run installs it"
        if os.environ.get("REQUIRE_TEST_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def running_redis(folder: Path, port: int | None = None) -> Iterator[str]:
    """redis-server on loopback (on ``port``, else a free one), no persistence, until the block ends; its URL once
    it accepts connections."""
    binary = required_service("redis-server", "apt-get install redis-server")
    port = port or free_port()
    process = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    wait_until_says(process, "Ready to accept connections", "redis-server")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


OIDC = Path(__file__).resolve().parent / "oidc"
KEY_ID = "test-key"
INTROSPECTOR_SECRET = "introspector-secret-0123456789abcdef"


@dataclass
class AuthorizationServer:
    """oidc-provider on loopback, signing with ``key`` (the tests sign tokens of their own with it too)."""

    issuer: str
    key: Any


@contextmanager
def running_authorization_server(folder: Path) -> Iterator[AuthorizationServer]:
    """oidc-provider (tests/oidc, installed from its lock file) on a free loopback port, with a new RSA key."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    node = required_service("node", "apt-get install nodejs")
    if not (OIDC / "node_modules" / "oidc-provider").is_dir():
        message = "oidc-provider is not installed (cd tests/oidc && npm ci); .ci/run installs it"
        if os.environ.get("REQUIRE_TEST_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    keys = folder / "jwks.json"
    keys.write_text(json.dumps({"keys": [{**jwk, "kid": KEY_ID, "alg": "RS256", "use": "sig"}]}))
    process = subprocess.Popen(
        [node, str(OIDC / "server.mjs")],
        env=shell_environment(OIDC_JWKS_FILE=str(keys), OIDC_INTROSPECTOR_SECRET=INTROSPECTOR_SECRET),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    line = wait_until_says(process, "issuer ", "oidc-provider")
    try:
        yield AuthorizationServer(issuer=line.split()[1], key=key)
    finally:
        process.terminate()
        process.wait(timeout=10)


def outcome_of(status: str | None) -> str:
    """The outcome buckets as the issue defines them, written out independently of the product's table."""
    for bucket, letters in (("delivered", "d"), ("failed", "efu"), ("rejected", "jg"), ("pending", "qsrab")):
        if status and status in letters:
            return bucket
    return "other"
