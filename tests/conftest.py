"""Fixtures: the TextMagic emulator over real HTTP on 127.0.0.1, servers pointed at it, clients of both eras."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import uvicorn
from mcp import Client
from mcp_types import CallToolResult

from server.app import SessionsServer, build_server
from server.config import load_settings
from server.http import listening_socket
from server.ratelimit import RateLimiter
from server.retry import RetryPolicy
from server.sandbox import Emulator, RecordedRequest
from server.textmagic import TextMagicClient

# Recognisable on purpose: tests grep every output for them.
USERNAME = "acme-ops"
API_KEY = "tmkey-SECRET-5f2c9a1e77d04b"
ANCHOR = datetime(2026, 11, 20, tzinfo=UTC)
ERAS = ["modern", "legacy"]


@dataclass
class ServedEmulator:
    emulator: Emulator
    url: str


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def serve_on_loopback(
    app: Any, lifespan: str = "off", **options: Any
) -> tuple[str, uvicorn.Server, threading.Thread]:
    """Serve ``app`` with uvicorn on a free 127.0.0.1 port; the socket is listening before this returns.

    ``options`` go to uvicorn's Config: ``ssl_certfile`` and ``ssl_keyfile`` serve HTTPS.
    """
    # Bound and listening now: connections queue in the backlog until uvicorn accepts them, so no wait.
    sock = listening_socket("127.0.0.1", 0)
    config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, log_config=None, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    scheme = "https" if "ssl_certfile" in options else "http"
    return f"{scheme}://127.0.0.1:{sock.getsockname()[1]}", server, thread


@pytest.fixture(scope="session")
def served() -> Iterator[ServedEmulator]:
    emulator = Emulator(username=USERNAME, api_key=API_KEY, anchor=ANCHOR)
    url, server, thread = serve_on_loopback(emulator.app)
    yield ServedEmulator(emulator, url)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def emulator(served: ServedEmulator) -> Emulator:
    served.emulator.reset()
    return served.emulator


@pytest.fixture
def make_server(served: ServedEmulator, emulator: Emulator) -> Any:
    def make(**overrides: Any) -> SessionsServer:
        settings = {
            "username": USERNAME,
            "api_key": API_KEY,
            "base_url": served.url,
            "timeout": 5,
            **overrides,
        }
        return build_server(load_settings(**settings))

    return make


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def connect(server: Any, era: str, **options: Any) -> AsyncIterator[Client]:
    async with Client(server, mode="legacy" if era == "legacy" else "auto", **options) as client:
        yield client


def text_of(result: CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def shell_environment(**extra: str) -> dict[str, str]:
    """The environment a fresh shell would give a subprocess: no TEXTMAGIC_* variables from the test run."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TEXTMAGIC_")} | extra


def textmagic_client(base_url: str, *, retry: RetryPolicy | None = None, **options: Any) -> TextMagicClient:
    """The project's TextMagic client with the test account, quick retries and no practical rate limit."""
    return TextMagicClient(
        base_url=base_url,
        username=USERNAME,
        api_key=API_KEY,
        timeout=5,
        pacer=RateLimiter(1000),
        retry=retry or RetryPolicy(base_delay=0.01),
        **options,
    )


def tm_requests(emulator: Emulator) -> list[RecordedRequest]:
    return [r for r in emulator.requests if r.path.startswith("/api/v2/")]
