"""The streamable HTTP transport: bearer tokens, Host/Origin checks, health and readiness, served by uvicorn.

Stateless on purpose: every request stands alone (JSON responses, no sessions), so any number of replicas can
sit behind any load balancer. Replicas must share TEXTMAGIC_CONFIRMATION_SECRET for each other's delete tokens
and elicitation rounds, and TEXTMAGIC_REDIS_URL for used confirmations, previews and the rate limit.

Clients that connect and never finish a request cannot lock the others out: a request's headers must arrive
within HEADER_DEADLINE, and when too many connections are waiting for theirs, the one waiting longest is
dropped (``GuardedH11Protocol``). A client whose request arrived is served, whoever is waiting beside it.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import resource
import signal
import socket
import sys
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import anyio
from mcp.server.auth.handlers.metadata import ProtectedResourceMetadataHandler
from mcp.server.auth.routes import cors_middleware
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.auth import ProtectedResourceMetadata
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from server import __version__
from server.state.caller import READ_SCOPE, SCOPES
from server.state.context import AppContext
from server.state.ledger import StateUnavailable
from server.state.settings import ConfigError, Settings, load_settings
from server.textmagic.urls import is_loopback
from server.wiring import logs
from server.wiring.access import MCP_PATH, READONLY_PATH, Authenticated, Narrowed, Resources
from server.wiring.app import SessionsServer, build_server
from server.wiring.auth import AccessTokens

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
# A probe waits this long at most for the shared state (Redis) to answer.
STATE_CHECK_SECONDS = 1.0
# Seconds a connection may take to send a request's headers, the first or the next on a kept-alive one.
HEADER_DEADLINE = 10.0
# Connections waiting for their headers at most: far below the file limit, so that accepting stays possible.
MAX_WAITING = 256
# On SIGTERM, calls in flight get this long to finish before the connections are closed.
SHUTDOWN_GRACE_SECONDS = 30

logger = logging.getLogger(__name__)


def http_app(server: SessionsServer, settings: Settings, *, on_loopback: bool) -> ASGIApp:
    """The ASGI application serving ``server`` at /mcp and /mcp/readonly, with /healthz, /readyz and, with
    OAuth, the protected resource metadata beside them.

    ``on_loopback``: the server listens on a loopback address only. Only then are loopback names accepted in
    ``Host`` and ``Origin`` without being listed: on any other address a client could send them to pass as local.
    """
    tokens = AccessTokens.of(settings) if settings.authenticates else None
    resources = Resources.of(settings)
    local_hosts = [*LOOPBACK_HOSTS, *(f"{host}:*" for host in LOOPBACK_HOSTS)] if on_loopback else []
    local_origins = (
        [f"http://{host}{port}" for host in LOOPBACK_HOSTS for port in ("", ":*")] if on_loopback else []
    )
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[*local_hosts, *settings.allowed_hosts],
        allowed_origins=[*local_origins, *settings.allowed_origins],
    )
    # Two answers to a call: one JSON body, or an event stream for a client that asked for progress.
    json_answer, streamed = (
        server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            json_response=json_response,
            stateless_http=True,
            transport_security=security,
            host=settings.host,
        )
        for json_response in (True, False)
    )
    served, destructive = server.tool_names()
    mcp: ASGIApp = CancelOnDisconnect(
        Narrowed(
            lambda call: streamed if call.wants_progress else json_answer,
            served,
            destructive,
            resources,
            settings.calls_per_caller,
        )
    )
    if tokens is not None:
        mcp = Authenticated(mcp, tokens, resources)
    readiness = Readiness(server, tokens)
    metrics: ASGIApp = Route("/metrics", metrics_endpoint, methods=["GET"]).app
    if tokens is not None:
        metrics = Authenticated(metrics, tokens, resources)
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readiness.endpoint, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route(MCP_PATH, mcp),
        Route(READONLY_PATH, mcp),
    ]
    if resources is not None:
        routes += resource_metadata_routes(resources)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # Each answer's session manager enters the server's lifespan; the server shares one between them.
        async with (
            json_answer.router.lifespan_context(json_answer),
            streamed.router.lifespan_context(streamed),
        ):
            yield

    return Starlette(routes=routes, lifespan=lifespan)


def resource_metadata_routes(resources: Resources) -> list[Route]:
    """RFC 9728 metadata of /mcp and /mcp/readonly, served by the SDK's handler, and of /mcp at the bare
    well-known path too, for clients that look there first."""
    routes = []
    for path, well_known in (
        (MCP_PATH, resources.metadata_path(MCP_PATH)),
        (READONLY_PATH, resources.metadata_path(READONLY_PATH)),
        (MCP_PATH, "/.well-known/oauth-protected-resource"),
    ):
        metadata = ProtectedResourceMetadata.model_validate(
            {
                "resource": resources.url(path),
                # As written: an issuer is compared as a string, and the model keeps it so.
                "authorization_servers": [resources.issuer],
                "scopes_supported": list(SCOPES if path == MCP_PATH else (READ_SCOPE,)),
                "resource_name": "TextMagic message sessions"
                + (" (read-only)" if path == READONLY_PATH else ""),
            }
        )
        handler = ProtectedResourceMetadataHandler(metadata)
        routes.append(
            Route(well_known, cors_middleware(handler.handle, ["GET", "OPTIONS"]), methods=["GET", "OPTIONS"])
        )
    return routes


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "version": __version__})


class Readiness:
    """Answers /readyz: can this replica serve? 200 while its server runs (503 while it starts or stops),
    whatever TextMagic's state: every replica shares TextMagic, so routing on it would take the whole fleet out
    for a blip, and keep it out until the balancer's rise. The body reports TextMagic's state as this replica's
    latest request found it (``answering``, ``failing``, ``unknown`` before any), never asking TextMagic
    itself, and whether deletes are available (Redis answers); why, and the version, only to a caller with a
    token this server accepts."""

    def __init__(self, server: SessionsServer, tokens: AccessTokens | None) -> None:
        self._server = server
        self._tokens = tokens
        self._state_checked_at = float("-inf")
        self._state_problem: str | None = None
        self._checking = anyio.Lock()

    async def endpoint(self, request: Request) -> JSONResponse:
        live = self._server.live
        told = await self._authenticated(request)
        if live is None:
            reason = {"reason": "The server is starting or stopping."} if told else {}
            return JSONResponse({"status": "not ready", **reason}, status_code=503)
        health = live.textmagic.health
        state_problem = await self._state(live)
        body: dict[str, str] = {
            "status": "ready",
            "textmagic": health.state,
            "deletes": "unavailable" if state_problem else "available",
        }
        if told:
            body["version"] = __version__
            if health.problem:
                body["textmagic_problem"] = health.problem
            if state_problem:
                body["deletes_problem"] = state_problem
        return JSONResponse(body)

    async def _state(self, live: AppContext) -> str | None:
        """Why deletes cannot be done now (the shared state does not answer within STATE_CHECK_SECONDS); probes
        arriving while a look is under way share its answer."""
        arrived = anyio.current_time()
        async with self._checking:
            if self._state_checked_at < arrived:
                problem: str | None = "the shared state (TEXTMAGIC_REDIS_URL) does not answer"
                with anyio.move_on_after(STATE_CHECK_SECONDS):
                    try:
                        await live.ledger.epoch()
                        problem = None
                    except StateUnavailable as exc:
                        problem = f"the shared state (TEXTMAGIC_REDIS_URL) cannot be reached ({exc})"
                self._state_problem, self._state_checked_at = problem, anyio.current_time()
        return self._state_problem

    async def _authenticated(self, request: Request) -> bool:
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if self._tokens is None or scheme.lower() != "bearer" or not presented.strip():
            return False
        return await self._tokens.verify_token(presented.strip()) is not None


async def metrics_endpoint(_request: Request) -> Response:
    """The Prometheus metrics of this process (``server.observability.metrics``)."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


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


def app_from_environment() -> ASGIApp:
    """For ``uvicorn --factory server.wiring.http:app_from_environment --workers N``: the app, configured as the CLI is.

    A factory cannot see the address uvicorn binds, so it always requires authentication and treats every
    address as public: loopback names in ``Host`` and ``Origin`` pass only when listed. Workers must share
    TEXTMAGIC_CONFIRMATION_SECRET, and TEXTMAGIC_REDIS_URL for used confirmations and the account's rate limit.
    Pass ``--http server.wiring.http:GuardedH11Protocol`` too, so slow clients cannot lock the others out.
    """
    try:
        settings = load_settings(transport="http")
        logs.configure(settings.log_level)
        if not settings.authenticates:
            raise ConfigError(unauthenticated("the address uvicorn binds (a factory cannot see it)"))
        server = build_server(settings)
    except ConfigError as exc:
        _stop_the_supervisor()
        # Raised out of a factory, it would reach the user as uvicorn's traceback; the message says it all.
        raise SystemExit(f"textmagic-sessions-mcp: configuration error: {exc}") from None
    return http_app(server, settings, on_loopback=False)


def _stop_the_supervisor() -> None:
    """Under ``--workers``, stop uvicorn's supervisor too: it would start worker after worker, each refused the
    same way, while its socket accepts connections that nobody serves."""
    parent = multiprocessing.parent_process()
    if parent is not None and parent.pid is not None:
        os.kill(parent.pid, signal.SIGTERM)


def unauthenticated(where: str) -> str:
    return (
        f"refusing to serve HTTP on {where} without authentication: anyone who can reach it could read and "
        "delete this account's sessions. Set TEXTMAGIC_MCP_TOKENS to one or more bearer tokens, or serve on "
        "127.0.0.1 with the textmagic-sessions-mcp command"
    )


def listening_socket(host: str, port: int, *, public: bool = True) -> socket.socket:
    """A bound, listening TCP socket whose connections asyncio will set to TCP_NODELAY.

    asyncio disables Nagle's algorithm only on sockets whose protocol is IPPROTO_TCP, and socket() defaults to
    0: without it every small answer waits for the peer's delayed ACK.

    Raises:
        ConfigError: when ``public`` is false and the address bound (``host`` resolved) is not loopback; the
            socket is closed before it listens, so nothing could connect.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
        bound = sock.getsockname()[0]
        if not public and not is_loopback(bound):
            raise ConfigError(unauthenticated(f"{bound} (TEXTMAGIC_HOST / --host {host})"))
    except BaseException:
        sock.close()
        raise
    sock.listen(512)
    return sock


def serve_http(server: SessionsServer, settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT; then let calls in flight finish and close the TextMagic client.

    Raises:
        ConfigError: serving without authentication on an address that is not loopback, judged from the
            address actually bound (a host name resolved), before anything listens.
    """
    import uvicorn

    sock = listening_socket(settings.host, settings.port, public=settings.authenticates)
    app = http_app(server, settings, on_loopback=is_loopback(sock.getsockname()[0]))
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
        http=GuardedH11Protocol,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
    )
    uvicorn.Server(config).run(sockets=[sock])


class Waiting:
    """Connections that have not sent their request's headers yet, the one waiting longest first."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._connections: OrderedDict[GuardedH11Protocol, None] = OrderedDict()

    def add(self, connection: GuardedH11Protocol) -> None:
        self._connections[connection] = None
        while len(self._connections) > self.limit:
            oldest, _ = self._connections.popitem(last=False)
            oldest.drop("too many connections waiting for their headers")

    def discard(self, connection: GuardedH11Protocol) -> None:
        self._connections.pop(connection, None)


def _waiting_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, min(MAX_WAITING, soft // 4))


class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, with a deadline for each request's headers and a cap on the connections
    waiting for them (see the module's docstring). For ``uvicorn --http server.wiring.http:GuardedH11Protocol``."""

    waiting: ClassVar[Waiting] = Waiting(_waiting_limit())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._seen: object = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # uvicorn makes a new cycle for each request whose headers it has read.
        if self.cycle is not None and self.cycle is not self._seen:
            self._seen = self.cycle
            self._admitted()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._admitted()
        super().connection_lost(exc)

    def drop(self, why: str) -> None:
        # Debug: under a flood of slow connections, a line for each would flood the log too.
        logger.debug("dropped a connection: %s", why)
        self._admitted()
        self.transport.close()

    def _await_headers(self) -> None:
        self._deadline = self.loop.call_later(
            HEADER_DEADLINE, self.drop, "its request's headers came too slowly"
        )
        self.waiting.add(self)

    def _admitted(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting.discard(self)
