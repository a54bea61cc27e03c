"""An HTTP proxy named by the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), as curl reads it:
requests go through a real forward proxy on 127.0.0.1, its password never shows, a bad value stops the start."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx2
import pytest
from starlette.requests import Request
from starlette.responses import Response

from server.config import ConfigError, environment_proxy
from server.retry import RetryPolicy
from server.sandbox import Emulator
from server.textmagic import TextMagicError
from tests.conftest import (
    API_KEY,
    USERNAME,
    ServedEmulator,
    connect,
    serve_on_loopback,
    text_of,
    textmagic_client,
    tm_requests,
)
from tests.test_cli import run

pytestmark = pytest.mark.anyio

PROXY_USER = "proxy-user"
PROXY_PASSWORD = "proxy-PASSWORD-91c3"
PROXY_VARIABLES = [
    f"{name}_proxy" if lower else f"{name.upper()}_PROXY"
    for name in ("http", "https", "all", "no")
    for lower in (True, False)
]


@dataclass
class Seen:
    method: str
    target: str
    proxy_authorization: str | None


@dataclass
class ForwardProxy:
    """A forward proxy for http:// targets, passing every request to ``upstream``; CONNECT (a tunnel for
    https://) is refused with 407. Notes what each request asked for."""

    upstream: str
    seen: list[Seen] = field(default_factory=list)

    async def __call__(self, scope: dict[str, object], receive: object, send: object) -> None:
        request = Request(scope, receive)  # type: ignore[arg-type]
        # An absolute-form target (GET http://host/path): uvicorn leaves it whole in the path.
        target = str(scope["path"])
        self.seen.append(Seen(request.method, target, request.headers.get("proxy-authorization")))
        if request.method == "CONNECT":
            response = Response("proxy authentication required", status_code=407)
        else:
            path = httpx2.URL(target).raw_path.decode()
            async with httpx2.AsyncClient(trust_env=False) as upstream:
                answer = await upstream.request(
                    request.method,
                    f"{self.upstream}{path}",
                    params=request.query_params.multi_items(),
                    content=await request.body(),
                    headers={k: v for k, v in request.headers.items() if not k.startswith("proxy-")},
                )
            response = Response(answer.content, answer.status_code, media_type="application/json")
        await response(scope, receive, send)  # type: ignore[arg-type]


@pytest.fixture
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture
def proxy(served: ServedEmulator) -> Iterator[tuple[ForwardProxy, str]]:
    forward = ForwardProxy(served.url)
    url, server, thread = serve_on_loopback(forward)
    yield forward, url
    server.should_exit = True
    thread.join(timeout=10)


def with_password(proxy_url: str) -> str:
    return proxy_url.replace("http://", f"http://{PROXY_USER}:{PROXY_PASSWORD}@")


async def test_calls_go_through_the_proxy_the_environment_names(
    make_server: object,
    emulator: Emulator,
    proxy: tuple[ForwardProxy, str],
    no_proxy_variables: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    forward, proxy_url = proxy
    no_proxy_variables.setenv("HTTP_PROXY", with_password(proxy_url))
    session_id = max(emulator.data.sessions)
    caplog.set_level(logging.DEBUG)
    # textmagic.test resolves nowhere: only the proxy can have carried the call.
    server = make_server(base_url="http://textmagic.test")  # type: ignore[operator]
    async with connect(server, "modern") as client:
        result = await client.call_tool("get_message_session_stat", {"id": session_id})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["all"] > 0
    basic = base64.b64encode(f"{PROXY_USER}:{PROXY_PASSWORD}".encode()).decode()
    assert [(s.method, s.target) for s in forward.seen] == [
        ("GET", f"http://textmagic.test/api/v2/sessions/{session_id}/stat")
    ]
    assert forward.seen[0].proxy_authorization == f"Basic {basic}"
    assert len(tm_requests(emulator)) == 1
    assert f"through the proxy {proxy_url}" in caplog.text
    assert PROXY_PASSWORD not in caplog.text + text_of(result) and basic not in caplog.text


async def test_a_refused_tunnel_never_reached_textmagic(
    proxy: tuple[ForwardProxy, str], emulator: Emulator
) -> None:
    forward, proxy_url = proxy
    retry = RetryPolicy(base_delay=0.01, max_attempts=2)
    async with textmagic_client(
        "https://textmagic.test", retry=retry, proxy=with_password(proxy_url)
    ) as client:
        # A bulk delete is never resent once it may have arrived: a refused tunnel is not that case.
        with pytest.raises(TextMagicError) as failed:
            await client.delete_sessions([1, 2])
    message = str(failed.value)
    assert "never reached TextMagic" in message and f"through the proxy {proxy_url}" in message
    assert "HTTPS_PROXY" in message and PROXY_PASSWORD not in message
    assert [s.method for s in forward.seen] == ["CONNECT", "CONNECT"] and tm_requests(emulator) == []


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        ({"HTTPS_PROXY": "http://p:3128"}, "https://rest.textmagic.com", "http://p:3128"),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://rest.textmagic.com", None),
        ({"HTTP_PROXY": "http://p:3128"}, "http://rest.textmagic.com", "http://p:3128"),
        ({"ALL_PROXY": "http://all:3128"}, "https://rest.textmagic.com", "http://all:3128"),
        (
            {"https_proxy": "http://lower:1", "HTTPS_PROXY": "http://upper:1"},
            "https://a.test",
            "http://lower:1",
        ),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "textmagic.com"}, "https://rest.textmagic.com", None),
        (
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "a.test, .textmagic.com"},
            "https://rest.textmagic.com",
            None,
        ),
        (
            {"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "magic.com"},
            "https://rest.textmagic.com",
            "http://p:3128",
        ),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, "https://rest.textmagic.com", None),
        ({"HTTP_PROXY": "http://p:3128"}, "http://127.0.0.1:8089", None),
        ({"HTTP_PROXY": "http://p:3128"}, "http://localhost:8089", None),
        ({}, "https://rest.textmagic.com", None),
    ],
)
def test_which_proxy_the_environment_names(
    environment: dict[str, str], url: str, expected: str | None, no_proxy_variables: pytest.MonkeyPatch
) -> None:
    for name, value in environment.items():
        no_proxy_variables.setenv(name, value)
    assert environment_proxy(url) == expected


@pytest.mark.parametrize("value", [f"socks5://u:{PROXY_PASSWORD}@p:1080", f"{PROXY_PASSWORD}@p:3128"])
def test_a_proxy_that_cannot_work_is_refused_without_echoing_it(
    value: str, no_proxy_variables: pytest.MonkeyPatch
) -> None:
    no_proxy_variables.setenv("HTTPS_PROXY", value)
    with pytest.raises(ConfigError, match="HTTPS_PROXY") as refused:
        environment_proxy("https://rest.textmagic.com")
    assert PROXY_PASSWORD not in str(refused.value)


def test_the_command_line_stops_on_a_bad_proxy() -> None:
    done = run(
        "tools",
        env={
            "TEXTMAGIC_USERNAME": USERNAME,
            "TEXTMAGIC_API_KEY": API_KEY,
            "HTTPS_PROXY": f"socks5://u:{PROXY_PASSWORD}@p:1080",
        },
    )
    assert done.returncode == 2 and "configuration error: HTTPS_PROXY" in done.stderr
    assert PROXY_PASSWORD not in done.stderr and "Traceback" not in done.stderr
