"""The streamable HTTP transport: bearer tokens, Host/Origin checks, health and readiness, served by uvicorn.

Stateless on purpose: every request stands alone (JSON responses, no sessions), so any number of replicas can
sit behind any load balancer. Replicas must share TEXTMAGIC_CONFIRMATION_SECRET for each other's delete tokens
and elicitation rounds.
"""

from __future__ import annotations

import hmac
import logging
import socket
import sys
from collections.abc import Sequence

import anyio
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import __version__
from server.app import SessionsServer, build_server
from server.config import ConfigError, Settings, load_settings
from server.textmagic import TextMagicError

MCP_PATH = "/mcp"
# Answer without a token: load balancers probe them, and they reveal nothing but health.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
READY_CACHE_SECONDS = 10.0
# On SIGTERM, calls in flight get this long to finish before the connections are closed.
SHUTDOWN_GRACE_SECONDS = 30

logger = logging.getLogger(__name__)


def http_app(server: SessionsServer, settings: Settings) -> ASGIApp:
    """The ASGI application serving ``server`` at /mcp, with /healthz and /readyz beside it."""
    readiness = Readiness(server)
    server.custom_route("/healthz", methods=["GET"])(healthz)
    server.custom_route("/readyz", methods=["GET"])(readiness.endpoint)
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*LOOPBACK_HOSTS, *(f"{host}:*" for host in LOOPBACK_HOSTS), *settings.allowed_hosts],
        allowed_origins=[
            *(f"http://{host}{port}" for host in LOOPBACK_HOSTS for port in ("", ":*")),
            *settings.allowed_origins,
        ],
    )
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        json_response=True,
        stateless_http=True,
        transport_security=security,
        host=settings.host,
    )
    guarded = CancelOnDisconnect(app)
    tokens = [token.get_secret_value() for token in settings.mcp_tokens]
    return BearerAuth(guarded, tokens) if tokens else guarded


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


class Readiness:
    """Answers /readyz: do the TextMagic credentials work? One cheap call, its answer kept briefly."""

    def __init__(self, server: SessionsServer) -> None:
        self._server = server
        self._checked_at = float("-inf")
        self._problem: str | None = None

    async def endpoint(self, _request: Request) -> JSONResponse:
        now = anyio.current_time()
        if now - self._checked_at > READY_CACHE_SECONDS:
            self._problem = await self._check()
            self._checked_at = now
        if self._problem:
            return JSONResponse({"status": "not ready", "reason": self._problem}, status_code=503)
        return JSONResponse({"status": "ready", "version": __version__})

    async def _check(self) -> str | None:
        live = self._server.live
        if live is None:
            return "The server is starting or stopping."
        try:
            await live.textmagic.count_sessions()
        except TextMagicError as exc:
            return str(exc)
        return None


class CancelOnDisconnect:
    """Stops a request's work when its client goes away, so no call to TextMagic outlives its asker.

    With JSON responses the SDK awaits the tool without listening to the client; this listens instead. Once
    the request body has been read, the only message the client can still send is its disconnect.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        body_read = anyio.Event()
        finished = False

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        async with anyio.create_task_group() as group:

            async def cancel_when_gone() -> None:
                await body_read.wait()
                # The server also answers "disconnect" once its response is complete: only an early one counts.
                if (await receive())["type"] == "http.disconnect" and not finished:
                    logger.info("client went away: stopping its request")
                    group.cancel_scope.cancel()

            group.start_soon(cancel_when_gone)
            await self._app(scope, tracked_receive, send)
            finished = True
            group.cancel_scope.cancel()


class BearerAuth:
    """Lets a request past only with one of the configured bearer tokens (health endpoints excepted)."""

    def __init__(self, app: ASGIApp, tokens: Sequence[str]) -> None:
        self._app = app
        self._tokens = [token.encode() for token in tokens]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            await self._app(scope, receive, send)
            return
        scheme, _, presented = Headers(scope=scope).get("authorization", "").partition(" ")
        candidate = presented.strip().encode()
        # Every token is compared, each in constant time, so timing tells nothing about any of them.
        matches = [hmac.compare_digest(candidate, token) for token in self._tokens]
        if scheme.lower() == "bearer" and any(matches):
            await self._app(scope, receive, send)
            return
        challenge = 'Bearer realm="textmagic-sessions-mcp"'
        if candidate:
            challenge += ', error="invalid_token"'
        response = JSONResponse(
            {
                "error": "invalid_token" if candidate else "unauthorized",
                "error_description": "Send one of the server's tokens (TEXTMAGIC_MCP_TOKENS) as "
                "'Authorization: Bearer <token>'.",
            },
            status_code=401,
            headers={"WWW-Authenticate": challenge},
        )
        await response(scope, receive, send)


def app_from_environment() -> ASGIApp:
    """For ``uvicorn --factory server.http:app_from_environment --workers N``: the app, configured as the CLI is.

    Each worker is its own process with its own pacer, so N workers should share TextMagic's limit through
    TEXTMAGIC_RATE_LIMIT (50 / N), and must share TEXTMAGIC_CONFIRMATION_SECRET.
    """
    try:
        settings = load_settings(transport="http")
        server = build_server(settings)
    except ConfigError as exc:
        # Raised out of a factory, it would reach the user as uvicorn's traceback; the message says it all.
        raise SystemExit(f"textmagic-sessions-mcp: configuration error: {exc}") from None
    return http_app(server, settings)


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket whose connections asyncio will set to TCP_NODELAY.

    asyncio disables Nagle's algorithm only on sockets whose protocol is IPPROTO_TCP, and socket() defaults to
    0: without it every small answer waits for the peer's delayed ACK.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(512)
    return sock


def serve_http(server: SessionsServer, settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT; then let calls in flight finish and close the TextMagic client."""
    import uvicorn

    app = http_app(server, settings)
    sock = listening_socket(settings.host, settings.port)
    family, port = sock.family, sock.getsockname()[1]
    shown_host = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    # The socket listens already, so a client that reads this line can connect at once.
    print(
        f"textmagic-sessions-mcp: serving MCP at http://{shown_host}:{port}{MCP_PATH}",
        file=sys.stderr,
        flush=True,
    )
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    uvicorn.Server(config).run(sockets=[sock])
