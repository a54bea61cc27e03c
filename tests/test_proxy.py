"""A proxy named by the environment (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), as curl reads it:
requests go through real proxies on 127.0.0.1 (an HTTP proxy forwarding http:// and tunnelling https://, a
SOCKS5 proxy), to an emulator whose certificate is checked end to end; the proxy's password never shows, a
bad value stops the start."""

from __future__ import annotations

import base64
import ipaddress
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import trustme
from anyio.abc import ByteStream, SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream
from anyio.streams.tls import TLSListener
from mcp_types import CallToolResult
from starlette.requests import Request
from starlette.responses import Response

from server.sandbox import Emulator
from server.state.settings import ConfigError, environment_proxy
from server.textmagic import RetryPolicy, TextMagicError, UncertainOutcome
from tests.helpers import (
    API_KEY,
    USERNAME,
    ServedEmulator,
    connect,
    run_script,
    serve_on_loopback,
    text_of,
    textmagic_client,
    tm_requests,
)

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


@dataclass
class TunnelProxy:
    """A CONNECT proxy, as corporate networks run for https://: every tunnel leads to 127.0.0.1:``port``,
    whatever host it asks for. Notes each tunnel's target and Proxy-Authorization."""

    port: int
    seen: list[Seen] = field(default_factory=list)

    def tunnels(self) -> list[tuple[str, str]]:
        """Each tunnel's target, with the ``user:password`` its Proxy-Authorization carried."""
        return [
            (s.target, base64.b64decode(s.proxy_authorization.removeprefix("Basic ")).decode())
            for s in self.seen
            if s.proxy_authorization
        ]

    async def handle(self, client: SocketStream) -> None:
        async with client:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await client.receive()
            request_line, *header_lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
            method, target, _ = request_line.split(" ")
            fields = (line.split(": ", 1) for line in header_lines)
            headers = {name.lower(): value for name, value in fields}
            self.seen.append(Seen(method, target, headers.get("proxy-authorization")))
            async with await anyio.connect_tcp("127.0.0.1", self.port) as upstream:
                await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                async with anyio.create_task_group() as pipes:
                    pipes.start_soon(pipe, client, upstream)
                    pipes.start_soon(pipe, upstream, client)


async def pipe(source: ByteStream, sink: ByteStream) -> None:
    async for chunk in source:
        await sink.send(chunk)
    # Half-closed, so the other direction can finish; the handler closes both streams after.
    await sink.send_eof()


@dataclass
class SocksProxy:
    """A SOCKS5 proxy (RFC 1928) that asks for a user name and password (RFC 1929); every connection leads to
    127.0.0.1:``port``, whatever host it asks for. Notes each connection's target and credentials, and
    the refusals of a wrong password."""

    port: int
    seen: list[tuple[str, str]] = field(default_factory=list)
    refused: int = 0

    def tunnels(self) -> list[tuple[str, str]]:
        """Each connection's target, with the ``user:password`` it was opened with."""
        return self.seen

    async def handle(self, client: SocketStream) -> None:
        async with client:
            incoming = BufferedByteReceiveStream(client)
            _, count = await incoming.receive_exactly(2)
            if 2 not in await incoming.receive_exactly(count):
                await client.send(b"\x05\xff")
                return
            await client.send(b"\x05\x02")
            _, length = await incoming.receive_exactly(2)
            user = (await incoming.receive_exactly(length)).decode()
            length = (await incoming.receive_exactly(1))[0]
            password = (await incoming.receive_exactly(length)).decode()
            if password != PROXY_PASSWORD:
                self.refused += 1
                await client.send(b"\x01\x01")
                return
            await client.send(b"\x01\x00")
            _, _, _, kind = await incoming.receive_exactly(4)
            if kind == 3:
                host = (await incoming.receive_exactly((await incoming.receive_exactly(1))[0])).decode()
            else:
                host = str(ipaddress.ip_address(await incoming.receive_exactly(4 if kind == 1 else 16)))
            target_port = int.from_bytes(await incoming.receive_exactly(2), "big")
            self.seen.append((f"{host}:{target_port}", f"{user}:{password}"))
            async with await anyio.connect_tcp("127.0.0.1", self.port) as upstream:
                await client.send(b"\x05\x00\x00\x01" + bytes(6))
                async with anyio.create_task_group() as pipes:
                    pipes.start_soon(pipe, client, upstream)
                    pipes.start_soon(pipe, upstream, client)


@asynccontextmanager
async def listening(
    proxy: TunnelProxy | SocksProxy, scheme: str, tls: ssl.SSLContext | None = None
) -> AsyncIterator[str]:
    """``proxy`` serving on a port of 127.0.0.1 of its own, over TLS when given ``tls``; yields its URL."""
    tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = tcp.extra(SocketAttribute.local_port)  # noqa: S610 (anyio's typed attributes, not Django)
    listener = tcp if tls is None else TLSListener(tcp, tls, standard_compatible=False)
    async with listener, anyio.create_task_group() as serving:
        serving.start_soon(listener.serve, proxy.handle)
        yield f"{scheme}://127.0.0.1:{port}"
        serving.cancel_scope.cancel()


@pytest.fixture
def authority() -> trustme.CA:
    """A certificate authority of the tests' own, trusted only through SSL_CERT_FILE."""
    return trustme.CA()


@pytest.fixture
def tls_emulator(authority: trustme.CA, tmp_path: Path) -> Iterator[tuple[Emulator, int, Path]]:
    """An emulator serving HTTPS as textmagic.test, with a certificate from ``authority`` (the CA's file)."""
    certificate = authority.issue_cert("textmagic.test")
    cafile, certfile, keyfile = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    authority.cert_pem.write_to_path(str(cafile))
    certificate.cert_chain_pems[0].write_to_path(str(certfile))
    certificate.private_key_pem.write_to_path(str(keyfile))
    emulator = Emulator(username=USERNAME, api_key=API_KEY)
    url, server, thread = serve_on_loopback(
        emulator.app, ssl_certfile=str(certfile), ssl_keyfile=str(keyfile)
    )
    yield emulator, httpx2.URL(url).port or 0, cafile
    server.should_exit = True
    thread.join(timeout=10)


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


def with_password(proxy_url: str, password: str = PROXY_PASSWORD) -> str:
    scheme, _, rest = proxy_url.partition("://")
    return f"{scheme}://{PROXY_USER}:{password}@{rest}"


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
    server = make_server(base_url="http://textmagic.test", allow_insecure_http=True)  # type: ignore[operator]
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
        ({"ALL_PROXY": "socks5://s:1080"}, "https://rest.textmagic.com", "socks5://s:1080"),
        ({"HTTPS_PROXY": "socks5h://u:p@s:1080"}, "https://rest.textmagic.com", "socks5h://u:p@s:1080"),
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


@pytest.mark.parametrize("value", [f"socks4://u:{PROXY_PASSWORD}@p:1080", f"{PROXY_PASSWORD}@p:3128"])
def test_a_proxy_that_cannot_work_is_refused_without_echoing_it(
    value: str, no_proxy_variables: pytest.MonkeyPatch
) -> None:
    no_proxy_variables.setenv("HTTPS_PROXY", value)
    with pytest.raises(ConfigError, match="HTTPS_PROXY") as refused:
        environment_proxy("https://rest.textmagic.com")
    assert PROXY_PASSWORD not in str(refused.value)


def test_the_command_line_stops_on_a_bad_proxy() -> None:
    done = run_script(
        "tools",
        env={
            "TEXTMAGIC_USERNAME": USERNAME,
            "TEXTMAGIC_API_KEY": API_KEY,
            "HTTPS_PROXY": f"socks4://u:{PROXY_PASSWORD}@p:1080",
        },
    )
    assert done.returncode == 2 and "configuration error: HTTPS_PROXY" in done.stderr
    assert PROXY_PASSWORD not in done.stderr and "Traceback" not in done.stderr


async def get_session_through(
    proxy: TunnelProxy | SocksProxy,
    scheme: str,
    make_server: Any,
    session_id: int,
    environment: pytest.MonkeyPatch,
    tls: ssl.SSLContext | None = None,
) -> CallToolResult:
    """get_message_session on a server whose HTTPS_PROXY (with a password) is ``proxy``, served as ``scheme``."""
    async with listening(proxy, scheme, tls) as proxy_url:
        environment.setenv("HTTPS_PROXY", with_password(proxy_url))
        server = make_server(base_url="https://textmagic.test")
        async with connect(server, "modern") as client:
            return await client.call_tool("get_message_session", {"id": session_id})


@pytest.mark.parametrize("scheme", ["http", "https", "socks5h"])
async def test_https_goes_through_the_proxy_with_tls_checked_end_to_end(
    scheme: str,
    make_server: object,
    authority: trustme.CA,
    tls_emulator: tuple[Emulator, int, Path],
    no_proxy_variables: pytest.MonkeyPatch,
) -> None:
    emulator, port, cafile = tls_emulator
    session_id = max(emulator.data.sessions)
    # The certificate is checked against the CA in SSL_CERT_FILE: how a proxy that inspects TLS is trusted.
    no_proxy_variables.setenv("SSL_CERT_FILE", str(cafile))
    # An HTTP proxy's CONNECT tunnel (https://: TLS to TextMagic inside TLS to the proxy), or a SOCKS5
    # connection: either way TextMagic's host name goes to the proxy.
    proxy = SocksProxy(port) if scheme == "socks5h" else TunnelProxy(port)
    tls = None
    if scheme == "https":
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(tls)
    result = await get_session_through(proxy, scheme, make_server, session_id, no_proxy_variables, tls)
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["id"] == session_id
    assert proxy.tunnels() == [("textmagic.test:443", f"{PROXY_USER}:{PROXY_PASSWORD}")]
    assert [r.path for r in tm_requests(emulator)] == [f"/api/v2/sessions/{session_id}"]


async def test_a_certificate_the_machine_does_not_trust_is_refused(
    make_server: object,
    tls_emulator: tuple[Emulator, int, Path],
    no_proxy_variables: pytest.MonkeyPatch,
) -> None:
    emulator, port, _ = tls_emulator
    session_id = max(emulator.data.sessions)
    tunnel = TunnelProxy(port)
    result = await get_session_through(tunnel, "http", make_server, session_id, no_proxy_variables)
    assert result.is_error
    assert "certificate at https://textmagic.test through the proxy" in text_of(result)
    assert "could not be verified (unable to get local issuer certificate)" in text_of(result)
    assert "SSL_CERT_FILE" in text_of(result)
    # Not retried: the same certificate would be refused again.
    assert len(tunnel.seen) == 1 and tm_requests(emulator) == []


async def test_calls_go_through_a_socks_proxy(
    make_server: object,
    served: ServedEmulator,
    emulator: Emulator,
    no_proxy_variables: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    socks = SocksProxy(httpx2.URL(served.url).port or 0)
    session_id = max(emulator.data.sessions)
    caplog.set_level(logging.DEBUG)
    async with listening(socks, "socks5") as proxy_url:
        no_proxy_variables.setenv("ALL_PROXY", with_password(proxy_url))
        # textmagic.test resolves nowhere: only the proxy can have carried the call.
        server = make_server(base_url="http://textmagic.test", allow_insecure_http=True)  # type: ignore[operator]
        async with connect(server, "modern") as client:
            result = await client.call_tool("get_message_session_stat", {"id": session_id})
    assert not result.is_error, text_of(result)
    assert result.structured_content is not None and result.structured_content["all"] > 0
    # The host name went to the proxy, which looked it up (socks5 and socks5h alike).
    assert socks.tunnels() == [("textmagic.test:80", f"{PROXY_USER}:{PROXY_PASSWORD}")]
    assert len(tm_requests(emulator)) == 1
    assert f"through the proxy {proxy_url}" in caplog.text
    assert PROXY_PASSWORD not in caplog.text + text_of(result)


async def test_a_socks_proxy_that_refuses_the_password_never_reached_textmagic(
    served: ServedEmulator, emulator: Emulator
) -> None:
    socks = SocksProxy(httpx2.URL(served.url).port or 0)
    retry = RetryPolicy(base_delay=0.01, max_attempts=2)
    async with listening(socks, "socks5") as proxy_url:
        wrong = with_password(proxy_url, "wrong-PASSWORD-77")
        async with textmagic_client("http://textmagic.test", retry=retry, proxy=wrong) as client:
            with pytest.raises(TextMagicError) as failed:
                await client.delete_sessions([1, 2])
    # Refused before anything was sent: the bulk delete could be tried again, and was.
    assert not isinstance(failed.value, UncertainOutcome)
    message = str(failed.value)
    assert "never reached TextMagic" in message and f"through the proxy {proxy_url}" in message
    assert "Invalid username/password" in message and "wrong-PASSWORD-77" not in message
    assert socks.refused == 2 and socks.seen == [] and tm_requests(emulator) == []
