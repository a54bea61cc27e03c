"""OAuth over HTTP with a real authorization server (oidc-provider on loopback): a client that knows only the URL
discovers, registers, signs in with PKCE and calls; tokens that must not pass are refused before any TextMagic
request; scopes, the read-only path and the narrowing headers decide what each request sees and may do; the
audit names who; progress reaches HTTP clients."""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from server.sandbox import Emulator
from server.state.settings import load_settings
from server.wiring.app import build_server
from server.wiring.http import http_app, listening_socket
from tests.helpers import (
    API_KEY,
    INTROSPECTOR_SECRET,
    KEY_ID,
    READ_TOOLS,
    TOKEN,
    TOOL_NAMES,
    USERNAME,
    AuthorizationServer,
    ServedEmulator,
    free_port,
    newest,
    serve_at,
    text_of,
    tm_requests,
)

pytestmark = pytest.mark.anyio

JSON_RPC = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
LISTING = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
LEGACY = {"MCP-Protocol-Version": "2025-11-25"}


@contextmanager
def oauth_server(
    served: ServedEmulator, issuer: str, host: str = "127.0.0.1", **overrides: Any
) -> Iterator[str]:
    """The server's HTTP app with OAuth, its public URL its own loopback address; yields that URL."""
    sock = listening_socket("127.0.0.1", 0)
    public = f"http://{host}:{sock.getsockname()[1]}"
    settings = load_settings(
        **{
            "username": USERNAME,
            "api_key": API_KEY,
            "base_url": served.url,
            "transport": "http",
            "oauth_issuer": issuer,
            "public_url": public,
            "confirmation_secret": "oauth-tests-share-this-secret-0123456789",
            # No practical rate limit: pacing has tests of its own.
            "rate_limit": 1000,
            **overrides,
        }
    )
    _, server, thread = serve_at(sock, http_app(build_server(settings), settings, on_loopback=True), "on")
    try:
        yield public
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def protected(served: ServedEmulator, authorization_server: AuthorizationServer) -> Iterator[str]:
    """One server with OAuth (and a static token beside it) for the tests that only present tokens; with no
    store of settled sessions, so that each test's reads reach TextMagic (and report their progress)."""
    with oauth_server(served, authorization_server.issuer, mcp_tokens=TOKEN, cache_mb=0) as url:
        yield url


def mint(
    authority: AuthorizationServer,
    audience: str,
    *,
    scope: str = "sessions:read sessions:delete",
    subject: str = "alice",
    **changes: Any,
) -> str:
    """An access token as the authorization server would sign it, with ``changes`` to its claims."""
    now = int(time.time())
    claims = {
        "iss": authority.issuer,
        "sub": subject,
        "aud": audience,
        "client_id": "test-client",
        "scope": scope,
        "iat": now,
        "exp": now + 300,
        **changes,
    }
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, authority.key, "RS256", {"kid": KEY_ID}
    )


async def post(
    url: str, message: dict[str, Any], token: str | None, path: str = "/mcp", **headers: str
) -> httpx2.Response:
    authorization = {"Authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient() as http:
        return await http.post(
            f"{url}{path}", json=message, headers=JSON_RPC | LEGACY | authorization | headers
        )


def listed(response: httpx2.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {tool["name"] for tool in response.json()["result"]["tools"]}


async def test_metadata_is_served_without_a_token(
    protected: str, authorization_server: AuthorizationServer
) -> None:
    async with httpx2.AsyncClient() as http:
        for path, resource in (
            ("/.well-known/oauth-protected-resource/mcp", "/mcp"),
            ("/.well-known/oauth-protected-resource", "/mcp"),
            ("/.well-known/oauth-protected-resource/mcp/readonly", "/mcp/readonly"),
        ):
            metadata = (await http.get(f"{protected}{path}")).json()
            assert metadata["resource"] == f"{protected}{resource}"
            assert metadata["authorization_servers"] == [authorization_server.issuer]
            assert metadata["bearer_methods_supported"] == ["header"] and metadata["resource_name"]
            expected = (
                ["sessions:read"] if resource.endswith("readonly") else ["sessions:read", "sessions:delete"]
            )
            assert metadata["scopes_supported"] == expected


async def test_a_request_without_a_token_learns_where_to_get_one(protected: str) -> None:
    for path in ("/mcp", "/mcp/readonly"):
        response = await post(protected, LISTING, None, path)
        assert response.status_code == 401
        challenge = response.headers["www-authenticate"]
        metadata = f"{protected}/.well-known/oauth-protected-resource{path}"
        assert challenge == f'Bearer resource_metadata="{metadata}", scope="sessions:read"'


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"aud": "https://api.example.com"}, "another resource"),
        ({"iss": "https://evil.example"}, "another issuer"),
    ],
    ids=["expired", "not-yet-valid", "wrong-audience", "wrong-issuer"],
)
async def test_tokens_whose_claims_are_wrong_are_refused(
    protected: str,
    authorization_server: AuthorizationServer,
    emulator: Emulator,
    changes: dict[str, Any],
    why: str,
) -> None:
    token = mint(authorization_server, f"{protected}/mcp", **changes)
    response = await post(
        protected,
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "get_all_message_sessions", "arguments": {}},
        },
        token,
    )
    assert response.status_code == 401
    assert (
        'error="invalid_token"' in response.headers["www-authenticate"]
        and why in response.json()["error_description"]
    )
    assert tm_requests(emulator) == []


def forged_tokens(authority: AuthorizationServer, audience: str) -> dict[str, str]:
    """Tokens that look right but were not signed by the issuer's key as published."""
    genuine = mint(authority, audience)
    header, payload, signature = genuine.split(".")
    public_pem = authority.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    unsigned = jwt.utils.base64url_encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).decode()
    tampered = jwt.utils.base64url_encode(json.dumps({**claims, "sub": "mallory"}).encode()).decode()
    hmac_header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": KEY_ID}).encode()
    )
    hmac_signing_input = hmac_header + b"." + payload.encode()
    # The classic confusion: the issuer's public key, which anyone has, used as an HMAC secret.
    hmac_signature = jwt.utils.base64url_encode(
        hmac.new(public_pem, hmac_signing_input, hashlib.sha256).digest()
    )
    return {
        "unknown-kid": jwt.encode(claims, authority.key, "RS256", {"kid": "rotated-away"}),
        "alg-none": f"{unsigned}.{payload}.",
        "hs256-with-the-public-key": (hmac_signing_input + b"." + hmac_signature).decode(),
        "tampered-payload": f"{header}.{tampered}.{signature}",
    }


@pytest.mark.parametrize("kind", ["unknown-kid", "alg-none", "hs256-with-the-public-key", "tampered-payload"])
async def test_forged_tokens_are_refused(
    protected: str, authorization_server: AuthorizationServer, emulator: Emulator, kind: str
) -> None:
    token = forged_tokens(authorization_server, f"{protected}/mcp")[kind]
    response = await post(protected, LISTING, token)
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]
    assert tm_requests(emulator) == []


async def test_scopes_shape_the_listing_and_a_read_token_steps_up_to_delete(
    protected: str, authorization_server: AuthorizationServer, emulator: Emulator
) -> None:
    audience = f"{protected}/mcp"
    reader = mint(authorization_server, audience, scope="sessions:read")
    both = mint(authorization_server, audience)
    assert listed(await post(protected, LISTING, reader)) == READ_TOOLS
    assert listed(await post(protected, LISTING, both)) == TOOL_NAMES
    [session_id] = newest(emulator)
    delete = {
        "jsonrpc": "2.0",
        "id": 2,
        "method": "tools/call",
        "params": {"name": "delete_message_session", "arguments": {"id": session_id}},
    }
    refused = await post(protected, delete, reader)
    assert refused.status_code == 403
    assert refused.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert 'scope="sessions:delete"' in refused.headers["www-authenticate"]
    assert tm_requests(emulator) == []


async def test_the_read_only_path_and_headers_narrow_but_never_widen(
    protected: str, authorization_server: AuthorizationServer
) -> None:
    audience = f"{protected}/mcp"
    both = mint(authorization_server, audience)
    reader = mint(authorization_server, audience, scope="sessions:read")
    readonly_token = mint(authorization_server, f"{protected}/mcp/readonly", scope="sessions:read")
    assert listed(await post(protected, LISTING, both, "/mcp/readonly")) == READ_TOOLS
    assert listed(await post(protected, LISTING, readonly_token, "/mcp/readonly")) == READ_TOOLS
    # A token for the read-only resource is not one for /mcp.
    assert (await post(protected, LISTING, readonly_token)).status_code == 401
    assert listed(await post(protected, LISTING, both, **{"X-MCP-Readonly": "true"})) == READ_TOOLS
    picked = {"X-MCP-Tools": "get_delivery_report,delete_message_session"}
    assert listed(await post(protected, LISTING, both, **picked)) == {
        "get_delivery_report",
        "delete_message_session",
    }
    # Never wider than the token's scopes or the path allow.
    assert listed(await post(protected, LISTING, reader, **picked)) == {"get_delivery_report"}
    assert listed(await post(protected, LISTING, both, "/mcp/readonly", **picked)) == {"get_delivery_report"}
    # The static token beside OAuth can do everything, unless narrowed.
    assert listed(await post(protected, LISTING, TOKEN)) == TOOL_NAMES
    resources = await post(
        protected,
        {"jsonrpc": "2.0", "id": 3, "method": "resources/templates/list"},
        both,
        **{"X-MCP-Tools": "get_message_session"},
    )
    assert [t["uriTemplate"] for t in resources.json()["result"]["resourceTemplates"]] == [
        "textmagic://sessions/{id}"
    ]


async def test_a_confirmation_is_refused_for_another_subject_and_the_audit_names_who(
    served: ServedEmulator, authorization_server: AuthorizationServer, emulator: Emulator, tmp_path: Path
) -> None:
    audit = tmp_path / "audit.jsonl"
    [session_id] = newest(emulator)
    with oauth_server(served, authorization_server.issuer, audit_log=str(audit)) as url:
        alice = mint(authorization_server, f"{url}/mcp", subject="alice")
        mallory = mint(authorization_server, f"{url}/mcp", subject="mallory")

        def call(arguments: dict[str, Any]) -> dict[str, Any]:
            return {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "delete_message_session", "arguments": arguments},
            }

        preview = (await post(url, call({"id": session_id}), alice)).json()["result"]["structuredContent"]
        confirming = {"id": session_id, "confirm": True, "confirmation_token": preview["confirmation_token"]}
        stolen = (await post(url, call(confirming), mallory)).json()["result"]
        assert stolen["isError"] and "issued to someone else" in stolen["content"][0]["text"]
        assert emulator.deleted_ids == []
        done = (await post(url, call(confirming), alice)).json()["result"]["structuredContent"]
        assert done["deleted"] is True and emulator.deleted_ids == [session_id]
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(r["outcome"], r["subject"], r["client_id"]) for r in records] == [
        ("preview", "alice", "test-client"),
        ("refused", "mallory", "test-client"),
        ("sending", "alice", "test-client"),
        ("deleted", "alice", "test-client"),
    ]
    tokens = [alice, mallory, preview["confirmation_token"]]
    assert not any(token in audit.read_text() for token in tokens)


class SignIn:
    """The person at the authorization server's pages: signs in as ``login`` and consents; hands the client the
    code the server redirects to its redirect URI with."""

    def __init__(self, login: str) -> None:
        self.login = login
        self.redirect: str | None = None

    async def redirect_handler(self, url: str) -> None:
        self.redirect = url

    async def callback_handler(self) -> AuthorizationCodeResult:
        assert self.redirect is not None
        async with httpx2.AsyncClient(follow_redirects=False) as browser:
            location = self.redirect
            for _ in range(12):
                page = await browser.get(location)
                if page.is_redirect:
                    location = urljoin(location, page.headers["location"])
                    if location.startswith("http://127.0.0.1:1/callback"):
                        query = parse_qs(urlsplit(location).query)
                        assert "code" in query, f"the authorization server refused: {query}"
                        return AuthorizationCodeResult(
                            code=query["code"][0],
                            state=query.get("state", [None])[0],
                            iss=query.get("iss", [None])[0],
                        )
                    continue
                form = re.search(r'<form[^>]*action="([^"]+)"', page.text)
                assert form is not None, page.text[:500]
                fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', page.text))
                fields.update({"login": self.login, "password": "anything"} if "login" in page.text else {})
                answer = await browser.post(urljoin(location, html.unescape(form.group(1))), data=fields)
                assert answer.is_redirect, answer.text[:500]
                location = urljoin(location, answer.headers["location"])
        raise AssertionError("the sign-in did not end at the redirect URI")


class Tokens:
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


def signing_in(url: str, person: SignIn, storage: Tokens, grant_types: list[str]) -> OAuthClientProvider:
    """The SDK's OAuth client for the server at ``url``, a public client registering itself, ``person`` at the
    authorization server's pages."""
    return OAuthClientProvider(
        server_url=f"{url}/mcp",
        client_metadata=OAuthClientMetadata(
            redirect_uris=["http://127.0.0.1:1/callback"],
            client_name="textmagic-sessions-mcp tests",
            token_endpoint_auth_method="none",
            grant_types=grant_types,
            response_types=["code"],
        ),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_a_client_that_knows_only_the_url_signs_in_and_calls(
    served: ServedEmulator, authorization_server: AuthorizationServer, emulator: Emulator, mode: str
) -> None:
    with oauth_server(served, authorization_server.issuer) as url:
        person = SignIn("alice")
        storage = Tokens()
        auth = signing_in(url, person, storage, ["authorization_code", "refresh_token"])
        [session_id] = newest(emulator)
        async with (
            httpx2.AsyncClient(auth=auth) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http), mode=mode) as client,
        ):
            reading = {tool.name for tool in (await client.list_tools()).tools}
            result = await client.call_tool("get_message_session", {"id": session_id})
            read_token = storage.tokens
            # A delete needs sessions:delete: the 403 sends the client to sign in again for it (step-up).
            preview = await client.call_tool("delete_message_session", {"id": session_id})
            everything = {tool.name for tool in (await client.list_tools()).tools}
    assert storage.client is not None and read_token is not None, "registered and signed in"
    claims = jwt.decode(read_token.access_token, options={"verify_signature": False})
    assert claims["aud"] == f"{url}/mcp" and claims["sub"] == "alice" and claims["scope"] == "sessions:read"
    assert reading == READ_TOOLS and everything == TOOL_NAMES
    assert not result.is_error and result.structured_content["id"] == session_id, text_of(result)
    assert not preview.is_error and preview.structured_content["confirmation_token"], text_of(preview)
    assert emulator.deleted_ids == []


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_progress_reaches_http_clients_that_ask_for_it(
    protected: str, authorization_server: AuthorizationServer, mode: str
) -> None:
    token = mint(authorization_server, f"{protected}/mcp")
    progress: list[float] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append(done)

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(f"{protected}/mcp", http_client=http), mode=mode) as client,
    ):
        report = await client.call_tool(
            "get_delivery_report", {"since": "2026-11-01"}, progress_callback=on_progress
        )
        plain = await client.call_tool("get_delivery_report", {"since": "2026-11-01"})
    assert not report.is_error and len(progress) > 10
    assert plain.structured_content == report.structured_content
    # Without a progress token, one JSON answer.
    async with httpx2.AsyncClient() as http:
        answer = await http.post(
            f"{protected}/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers=JSON_RPC | LEGACY | {"Authorization": f"Bearer {token}"},
        )
    assert answer.headers["content-type"].startswith("application/json")


async def test_an_unreachable_issuer_is_temporary(
    served: ServedEmulator, authorization_server: AuthorizationServer
) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    with oauth_server(served, nowhere) as url:
        token = mint(authorization_server, f"{url}/mcp")
        response = await post(url, LISTING, token)
    assert response.status_code == 503 and response.headers["retry-after"]
    assert "try again" in response.json()["error_description"]


async def test_opaque_tokens_are_introspected(
    served: ServedEmulator, authorization_server: AuthorizationServer, emulator: Emulator
) -> None:
    # The authorization server issues opaque tokens for resources on "localhost" (see tests/oidc/server.mjs).
    introspection = {
        "oauth_introspection_url": f"{authorization_server.issuer}/token/introspection",
        "oauth_client_id": "introspector",
        "oauth_client_secret": INTROSPECTOR_SECRET,
    }
    with oauth_server(served, authorization_server.issuer, host="localhost", **introspection) as url:
        person = SignIn("bob")
        storage = Tokens()
        auth = signing_in(url, person, storage, ["authorization_code"])
        async with (
            httpx2.AsyncClient(auth=auth) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            names = {tool.name for tool in (await client.list_tools()).tools}
        assert storage.tokens is not None and storage.tokens.access_token.count(".") != 2, "an opaque token"
        assert names == READ_TOOLS
        refused = await post(url, LISTING, "not-a-token-the-server-knows")
    assert refused.status_code == 401 and "not active" in refused.json()["error_description"]
