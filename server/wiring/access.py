"""Who may do what over HTTP, decided before a request reaches MCP: the bearer token checked (401 with where to
get one, 503 while the authorization server cannot be asked), the tools this request may see and call (the
token's scopes, ``/mcp/readonly`` and the ``X-MCP-Readonly`` / ``X-MCP-Tools`` headers, which only ever narrow),
and a delete call without the scope to delete refused with 403 and the scope to step up to.

The request body is read once here (bounded) to see which method and tool it calls and whether it asked for
progress, then handed on unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.routes import build_resource_metadata_url
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from pydantic import AnyHttpUrl
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.state.caller import DELETE_SCOPE, READ_SCOPE, allowed_tools
from server.state.settings import Settings
from server.textmagic.pacer import caller_key
from server.wiring.auth import AccessTokens, IssuerUnavailable, TokenRefused

MCP_PATH = "/mcp"
READONLY_PATH = "/mcp/readonly"
# Seconds a client is asked to wait while the authorization server cannot be reached.
RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class Resources:
    """The protected resources this server is, as clients name them in OAuth: /mcp, and /mcp/readonly, and the
    authorization server that issues tokens for them."""

    base: str
    issuer: str

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def metadata_url(self, path: str) -> str:
        return str(build_resource_metadata_url(AnyHttpUrl(self.url(path))))

    def metadata_path(self, path: str) -> str:
        return urlsplit(self.metadata_url(path)).path

    @classmethod
    def of(cls, settings: Settings) -> Resources | None:
        if settings.public_url is None or settings.oauth_issuer is None:
            return None
        return cls(settings.public_url.rstrip("/"), settings.oauth_issuer)


class Authenticated:
    """Lets a request to MCP through only with a token this server accepts, as the SDK's AccessToken in the
    request (``get_access_token()``): the caller's subject, client and scopes."""

    def __init__(self, app: ASGIApp, tokens: AccessTokens, resources: Resources | None) -> None:
        # The SDK's middleware puts the caller where tools and policies read it.
        self._app = AuthContextMiddleware(app)
        self._tokens = tokens
        self._resources = resources

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        scheme, _, presented = Headers(scope=scope).get("authorization", "").partition(" ")
        token = presented.strip()
        if not token:
            await self._challenge(path, "unauthorized", "Authentication required", 401)(scope, receive, send)
            return
        if scheme.lower() != "bearer":
            description = "Send the token as 'Authorization: Bearer <token>'."
            await self._challenge(path, "invalid_token", description, 401)(scope, receive, send)
            return
        try:
            access = await self._tokens.check(token, self._audiences(path))
        except TokenRefused as refused:
            await self._challenge(path, "invalid_token", str(refused), 401)(scope, receive, send)
            return
        except IssuerUnavailable as unavailable:
            response = JSONResponse(
                {
                    "error": "temporarily_unavailable",
                    "error_description": "The authorization server cannot be reached to check the token "
                    f"({unavailable}); try again shortly.",
                },
                status_code=503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
            await response(scope, receive, send)
            return
        if READ_SCOPE not in access.scopes and DELETE_SCOPE not in access.scopes:
            await self._challenge(path, "insufficient_scope", f"Required scope: {READ_SCOPE}", 403)(
                scope, receive, send
            )
            return
        scope["user"] = AuthenticatedUser(access)
        scope["auth"] = AuthCredentials(access.scopes)
        await self._app(scope, receive, send)

    def _audiences(self, path: str) -> list[str]:
        accepted = list(self._tokens.audiences)
        if self._resources is not None and path == READONLY_PATH:
            # A token for /mcp serves /mcp/readonly too; one for /mcp/readonly serves nothing more.
            accepted.append(self._resources.url(READONLY_PATH))
        return accepted

    def _challenge(self, path: str, error: str, description: str, status: int) -> JSONResponse:
        return challenge(self._resources, path, error, description, status, READ_SCOPE)


def challenge(
    resources: Resources | None, path: str, error: str, description: str, status: int, scope: str
) -> JSONResponse:
    """A 401 or 403 that tells an OAuth client where to learn how to get a token, and with which scope."""
    parts = (
        [] if error == "unauthorized" else [f'error="{error}"', f'error_description="{_quoted(description)}"']
    )
    if resources is not None:
        parts += [f'resource_metadata="{resources.metadata_url(path)}"', f'scope="{scope}"']
    else:
        parts.insert(0, 'realm="textmagic-sessions-mcp"')
        if error == "unauthorized":
            description = (
                "Send one of the server's tokens (TEXTMAGIC_MCP_TOKENS) as 'Authorization: Bearer <token>'."
            )
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"WWW-Authenticate": "Bearer " + ", ".join(parts)},
    )


def _quoted(text: str) -> str:
    # A quoted-string of RFC 9110: no quote, no backslash, no control character.
    return "".join(c for c in text if c.isprintable() and c not in '"\\')[:300]


@dataclass(frozen=True)
class Call:
    """What a JSON-RPC request body asks: the tool it calls, whether it wants progress, its id."""

    tool: str | None = None
    wants_progress: bool = False
    id: str | int | None = None

    @classmethod
    def of(cls, body: bytes) -> Call:
        try:
            message: Any = json.loads(body)
        except ValueError:
            return cls()
        if not isinstance(message, dict):
            return cls()
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
        meta = params.get("_meta")
        method = message.get("method")
        tool = params.get("name") if method == "tools/call" else None
        identifier = message.get("id")
        return cls(
            tool=tool if isinstance(tool, str) else None,
            wants_progress=isinstance(meta, dict) and meta.get("progressToken") is not None,
            id=identifier if isinstance(identifier, str | int) and not isinstance(identifier, bool) else None,
        )


class Narrowed:
    """Sets the tools this request may see and call, and refuses a delete that the token's scopes do not
    allow with 403 and ``insufficient_scope`` before it reaches any tool; holds each caller to
    ``calls_per_caller`` tool calls at once. ``choose`` picks the app that answers the call (one JSON answer,
    or a stream for a client that asked for progress)."""

    def __init__(
        self,
        choose: Callable[[Call], ASGIApp],
        served: Collection[str],
        destructive: Collection[str],
        resources: Resources | None,
        calls_per_caller: int,
    ) -> None:
        self._choose = choose
        self._served = frozenset(served)
        self._destructive = frozenset(destructive)
        self._resources = resources
        self._calls_per_caller = calls_per_caller
        self._running: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body, replay = await _read_body(receive)
        if body is None:
            await JSONResponse({"error": "request body too large"}, status_code=413)(scope, receive, send)
            return
        call = Call.of(body)
        user = scope.get("user")
        scopes = frozenset(user.scopes) if isinstance(user, AuthenticatedUser) else None
        if call.tool in self._destructive and scopes is not None and DELETE_SCOPE not in scopes:
            description = f"Deleting needs the {DELETE_SCOPE} scope; sign in again granting it."
            refused = challenge(
                self._resources, scope["path"], "insufficient_scope", description, 403, DELETE_SCOPE
            )
            await refused(scope, replay, send)
            return
        # Callers take turns at TextMagic: a person by their token, anyone else by their connection.
        who = user.access_token.subject if isinstance(user, AuthenticatedUser) else None
        client = scope.get("client") or ("", 0)
        key = who or f"connection:{client[0]}:{client[1]}"
        counted = call.tool is not None
        if counted and self._running.get(key, 0) >= self._calls_per_caller:
            await _too_many(call, self._calls_per_caller)(scope, replay, send)
            return
        if counted:
            self._running[key] = self._running.get(key, 0) + 1
        allowed = narrowed(self._served, self._destructive, scope["path"], Headers(scope=scope), scopes)
        token, turn = allowed_tools.set(allowed), caller_key.set(key)
        try:
            await self._choose(call)({**scope, "path": MCP_PATH, "raw_path": MCP_PATH.encode()}, replay, send)
        finally:
            caller_key.reset(turn)
            allowed_tools.reset(token)
            if counted:
                self._running[key] -= 1
                if not self._running[key]:
                    del self._running[key]


def _too_many(call: Call, limit: int) -> JSONResponse:
    """The call's answer, as a tool error the model reads: the caller has as many calls running as it may."""
    text = (
        f"You have {limit} calls running on this server already, as many as one caller may "
        "(TEXTMAGIC_CALLS_PER_CALLER). Wait for one to finish, then call again. Nothing was done."
    )
    # resultType: the 2026-07-28 protocol requires it; earlier ones ignore it.
    result = {"content": [{"type": "text", "text": text}], "isError": True, "resultType": "complete"}
    return JSONResponse({"jsonrpc": "2.0", "id": call.id, "result": result})


def narrowed(
    served: frozenset[str],
    destructive: frozenset[str],
    path: str,
    headers: Headers,
    scopes: frozenset[str] | None,
) -> frozenset[str]:
    """The tools one request may use: what the server serves, less the deletes when the path, a header or the
    token's scopes say read-only, and only those ``X-MCP-Tools`` names. Never more than served."""
    allowed = set(served)
    read_only = headers.get("x-mcp-readonly", "").strip().lower() in ("true", "1", "yes")
    if path == READONLY_PATH or read_only or (scopes is not None and DELETE_SCOPE not in scopes):
        allowed -= destructive
    if scopes is not None and READ_SCOPE not in scopes:
        allowed &= destructive
    if "x-mcp-tools" in headers:
        allowed &= {name.strip() for name in headers["x-mcp-tools"].split(",")}
    return frozenset(allowed)


async def _read_body(receive: Receive) -> tuple[bytes | None, Receive]:
    """The whole body (None past the SDK's bound), and a receive that hands it on, then the client's messages."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > DEFAULT_MAX_REQUEST_BODY_SIZE:
            return None, receive
        parts.append(chunk)
        if not message.get("more_body", False):
            break
    body = b"".join(parts)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay
