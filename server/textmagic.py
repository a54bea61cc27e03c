"""The TextMagic REST client: one pooled HTTP client per server, six operations, errors the model can act on."""

from __future__ import annotations

import base64
import json as jsonlib
import logging
import ssl
import urllib.parse
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
import httpx2
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, ValidationError

from server import __version__
from server.config import without_credentials
from server.ratelimit import RateLimiter
from server.retry import RETRY_STATUSES, RetryPolicy, retry_after_seconds
from tools.models import MessageSession, MessagesPage, SessionsPage, SessionStat

if TYPE_CHECKING:
    import httpcore2

ModelT = TypeVar("ModelT", bound=BaseModel)

# httpcore2 traces each step of a request at DEBUG, its SOCKS handshake with the proxy's password in it:
# none of that reaches this server's log, whatever its level.
logging.getLogger("httpcore2").setLevel(logging.INFO)

# The HTTP statuses TextMagic answered during the current tool call, for its log line.
_statuses: ContextVar[list[int] | None] = ContextVar("textmagic_statuses", default=None)


def track_statuses() -> list[int]:
    """From now on in this task (and tasks it starts), record every TextMagic status into the returned list."""
    statuses: list[int] = []
    _statuses.set(statuses)
    return statuses


USER_AGENT = f"textmagic-sessions-mcp/{__version__}"
# TextMagic allows 50 requests/s per account: more requests in flight than that cannot help.
POOL_SIZE = 50
_MAX_ERROR_TEXT = 300


class TextMagicError(ToolError):
    """A TextMagic call failed; the message says why and what to do, and never carries credentials."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UncertainOutcome(TextMagicError):
    """A request that changes data failed after it may have reached TextMagic: it may have been carried out."""


class TextMagicClient:
    """Typed access to TextMagic's message-sessions API over keep-alive connections every call shares."""

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        api_key: str,
        timeout: float,
        pacer: RateLimiter,
        retry: RetryPolicy,
        proxy: str | None = None,
        connections: Connections | None = None,
    ) -> None:
        """``proxy``: a proxy URL (HTTP or SOCKS5) to reach TextMagic through; ``connections`` replaces the pool."""
        self.base_url = base_url.rstrip("/")
        self._via = f" through the proxy {without_credentials(proxy)}" if proxy else ""
        self._timeout = timeout
        self._pacer = pacer
        self._retry = retry
        # The URL's parts, checked once here rather than parsed again for every request.
        root = httpx2.URL(self.base_url)
        self._origin = (root.raw_scheme, root.raw_host, root.port)
        self._root_path = root.raw_path.rstrip(b"/")
        credentials = base64.b64encode(f"{username}:{api_key}".encode()).decode("ascii")
        # httpx2.Headers, not a list: its repr masks the Authorization value.
        self._headers = httpx2.Headers(
            {
                "Host": root.netloc.decode("ascii"),
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": "gzip, deflate",
                "Authorization": f"Basic {credentials}",
            }
        )
        self._timeouts = {"timeout": httpx2.Timeout(timeout, connect=min(timeout, 10.0)).as_dict()}
        self._connections = connections or TextMagicConnections(proxy)

    async def __aenter__(self) -> TextMagicClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._connections.aclose()

    async def list_sessions(self, *, page: int, limit: int) -> SessionsPage:
        return await self._get("/api/v2/sessions", SessionsPage, params={"page": page, "limit": limit})

    async def count_sessions(self) -> int:
        # TextMagic has no total count; at limit=1 the page count is the number of sessions.
        return (await self.list_sessions(page=1, limit=1)).page_count

    async def get_session(self, session_id: int) -> MessageSession:
        return await self._get(f"/api/v2/sessions/{session_id}", MessageSession, subject=session_id)

    async def get_session_stat(self, session_id: int, *, include_deleted: bool) -> SessionStat:
        return await self._get(
            f"/api/v2/sessions/{session_id}/stat",
            SessionStat,
            params={"includeDeleted": int(include_deleted)},
            subject=session_id,
        )

    async def get_session_messages(
        self,
        session_id: int,
        *,
        page: int,
        limit: int,
        statuses: Iterable[str] | None,
        include_deleted: bool,
    ) -> MessagesPage:
        params: dict[str, Any] = {"page": page, "limit": limit, "includeDeleted": int(include_deleted)}
        if statuses:
            params["statuses"] = ",".join(statuses)
        return await self._get(
            f"/api/v2/sessions/{session_id}/messages", MessagesPage, params=params, subject=session_id
        )

    async def delete_session(self, session_id: int) -> None:
        await self._request("DELETE", f"/api/v2/sessions/{session_id}", subject=session_id)

    async def delete_sessions(self, session_ids: Iterable[int]) -> None:
        """Raises UncertainOutcome when the request may have been carried out despite the failure."""
        body = {"ids": ",".join(str(i) for i in session_ids), "all": 0}
        await self._request("POST", "/api/v2/sessions/delete", json=body, resend_if_maybe_received=False)

    async def delete_all_sessions(self) -> None:
        """Raises UncertainOutcome when the request may have been carried out despite the failure."""
        await self._request(
            "POST", "/api/v2/sessions/delete", json={"all": 1}, resend_if_maybe_received=False
        )

    async def _get(
        self,
        path: str,
        model: type[ModelT],
        *,
        params: Mapping[str, Any] | None = None,
        subject: int | None = None,
    ) -> ModelT:
        response = await self._request("GET", path, params=params, subject=subject)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
            raise TextMagicError(
                f"TextMagic answered GET {path} with a body this server cannot read (problem at: "
                f"{', '.join(fields[:5])}). Try again; if it persists, TextMagic's API may have changed and "
                "this server needs an update."
            ) from None

    async def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Mapping[str, Any] | None = None,
        subject: int | None = None,
        resend_if_maybe_received: bool = True,
    ) -> httpx2.Response:
        """Send, retrying transient failures within the retry policy.

        A failure before the request left (no connection) is always retried. One after it may have reached
        TextMagic (a timeout, a dropped connection, 429 or 5xx) is retried only when sending it twice does no
        harm (``resend_if_maybe_received``: reads and single deletes); otherwise it raises UncertainOutcome.
        """
        # httpcore2 (40 ms to import) loads with the first request, not while MCP clients wait for the start.
        import httpcore2

        started = anyio.current_time()
        attempt = 0
        maybe_received = False
        while True:
            attempt += 1
            await self._pacer.wait()
            asked_wait: float | None = None
            failed: httpx2.Response | None = None
            try:
                response = await self._send(method, path, params, json)
            # A proxy that refuses the tunnel answers before anything reaches TextMagic.
            except (
                httpcore2.ConnectError,
                httpcore2.ConnectTimeout,
                httpcore2.PoolTimeout,
                httpcore2.ProxyError,
            ) as exc:
                if (refusal := _certificate_refusal(exc)) is not None:
                    # Trying again cannot help: the same certificate would be refused.
                    raise TextMagicError(
                        f"TextMagic's certificate at {self.base_url}{self._via} could not be verified ({refusal}), so "
                        "nothing was sent. If a proxy or firewall on this network inspects TLS, point SSL_CERT_FILE "
                        "at its certificate authority; otherwise check TEXTMAGIC_BASE_URL."
                    ) from None
                reached, problem = False, f"could not connect ({type(exc).__name__}: {exc})"
            except httpcore2.TimeoutException:
                reached, problem = True, f"no answer within {self._timeout:g} s (TEXTMAGIC_TIMEOUT)"
            except (httpcore2.NetworkError, httpcore2.ProtocolError) as exc:
                reached, problem = True, f"the connection failed ({type(exc).__name__})"
            except httpx2.DecodingError:
                reached, problem = True, "its answer could not be decompressed"
            else:
                if (statuses := _statuses.get()) is not None:
                    statuses.append(response.status_code)
                if response.status_code not in RETRY_STATUSES:
                    if response.status_code == 404 and method == "DELETE" and maybe_received:
                        # An earlier attempt deleted it and its answer was lost: done, not missing.
                        return response
                    if response.status_code >= 400:
                        raise _status_error(response, subject)
                    return response
                failed, reached, problem = response, True, f"HTTP {response.status_code}"
                asked_wait = retry_after_seconds(response.headers.get("retry-after"))
            maybe_received = maybe_received or reached
            elapsed = anyio.current_time() - started
            if reached and not resend_if_maybe_received:
                raise UncertainOutcome(
                    f"TextMagic at {self.base_url} failed after the request was sent ({problem}); it may or "
                    "may not have been carried out, so it was not sent again."
                )
            delay = asked_wait if asked_wait is not None else self._retry.backoff(attempt)
            if attempt < self._retry.max_attempts and elapsed + delay <= self._retry.budget:
                await anyio.sleep(delay)
                continue
            tries = f"Tried {attempt} time{'s' if attempt > 1 else ''} over {elapsed:.1f} s."
            if failed is not None:
                error = _status_error(failed, subject)
                later = f" TextMagic asked to wait {asked_wait:.0f} s (Retry-After)." if asked_wait else ""
                raise TextMagicError(f"{error} {tries}{later}", status=error.status)
            if not reached:
                raise TextMagicError(
                    f"Could not reach TextMagic at {self.base_url}{self._via}: {problem}. {tries} The request never "
                    "reached TextMagic, so trying again later is safe. Check TEXTMAGIC_BASE_URL, the network "
                    f"connection{' and the proxy (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY)' if self._via else ''}."
                )
            raise TextMagicError(
                f"TextMagic at {self.base_url} is not answering: {problem}. {tries} This is usually temporary: "
                "try again in a minute."
            )

    async def _send(
        self, method: str, path: str, params: Mapping[str, Any] | None, json: Mapping[str, Any] | None
    ) -> httpx2.Response:
        """One HTTP exchange, body read and decompressed.

        Made with httpcore2, the transport under httpx2, from parts prepared once: httpx2's request and
        response objects parse and wrap every URL, header and body again, which in a burst of calls cost the
        event loop a fifth of its time (``bench/README.md``).
        """
        import httpcore2

        target = self._root_path + path.encode("ascii")
        if params:
            target += b"?" + urllib.parse.urlencode(params).encode("ascii")
        headers = self._headers.raw
        body = None
        if json is not None:
            body = jsonlib.dumps(json, separators=(",", ":")).encode()
            headers += [(b"Content-Type", b"application/json"), (b"Content-Length", str(len(body)).encode())]
        scheme, host, port = self._origin
        request = httpcore2.Request(
            method,
            httpcore2.URL(scheme=scheme, host=host, port=port, target=target),
            headers=headers,
            content=body,
            extensions=self._timeouts,
        )
        answer = await self._connections.handle_async_request(request)
        return httpx2.Response(answer.status, headers=answer.headers, content=answer.content)


class Connections(Protocol):
    """Where the client's requests go: an httpcore2 request in, its answer out with the whole body read."""

    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response: ...

    async def aclose(self) -> None: ...


class TextMagicConnections:
    """POOL_SIZE keep-alive connections, each in a pool of its own, built on the first request rather than at start.

    Building them loads the CA certificates for TLS: tens of milliseconds, up to a tenth of a second the first
    time in a process, which every MCP client would otherwise wait for before the tools are even listed.

    A pool per connection, because httpcore2 probes the socket of every idle connection in a pool each time a
    request starts or ends (pydantic/httpx2#1169): in one pool of 50, a burst of calls spent more CPU on
    those probes than on the requests themselves. A request takes the first connection with nothing in
    flight (the least busy one when none is free), so calls one at a time keep reusing the first.
    """

    def __init__(self, proxy: str | None = None) -> None:
        self._proxy = httpx2.Proxy(proxy) if proxy else None
        self._pools: list[httpcore2.AsyncConnectionPool] = []
        self._in_flight: list[int] = []

    async def handle_async_request(self, request: httpcore2.Request) -> httpcore2.Response:
        if not self._pools:
            self._pools = self._open()
            self._in_flight = [0] * POOL_SIZE
        slot = self._in_flight.index(min(self._in_flight))
        self._in_flight[slot] += 1
        try:
            response = await self._pools[slot].handle_async_request(request)
            try:
                await response.aread()
            finally:
                await response.aclose()
            return response
        finally:
            # Busy until the body is read and the connection handed back, not just until the headers came.
            self._in_flight[slot] -= 1

    def _open(self) -> list[httpcore2.AsyncConnectionPool]:
        """POOL_SIZE pools of one connection each: direct, or through the proxy as httpx2 would build them."""
        import httpcore2

        from server.network import AsyncioBackend

        options: dict[str, Any] = {
            "ssl_context": httpx2.create_ssl_context(),
            "max_connections": 1,
            "max_keepalive_connections": 1,
            # Seconds an idle connection is kept for reuse: httpx2's default.
            "keepalive_expiry": 5.0,
            "network_backend": AsyncioBackend(),
        }
        kind: type[httpcore2.AsyncConnectionPool] = httpcore2.AsyncConnectionPool
        if self._proxy is not None:
            url = self._proxy.url
            options["proxy_url"] = httpcore2.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            )
            options["proxy_auth"] = self._proxy.raw_auth
            if url.scheme in ("socks5", "socks5h"):
                kind = httpcore2.AsyncSOCKSProxy
            else:
                kind = httpcore2.AsyncHTTPProxy
                options["proxy_ssl_context"] = self._proxy.ssl_context
        return [kind(**options) for _ in range(POOL_SIZE)]

    async def aclose(self) -> None:
        for pool in self._pools:
            await pool.aclose()


def _certificate_refusal(exc: BaseException) -> str | None:
    """Why the server's TLS certificate was refused, when that is what ``exc`` comes from."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return str(cause.verify_message)
        cause = cause.__cause__ or cause.__context__
    return None


def _status_error(response: httpx2.Response, subject: int | None) -> TextMagicError:
    status = response.status_code
    code, detail, fields, common = _error_body(response)
    said = f"TextMagic said: {detail}" if detail else "TextMagic gave no details"
    if status == 401:
        message = (
            f"TextMagic refused the credentials (401; {said}). Check TEXTMAGIC_USERNAME and TEXTMAGIC_API_KEY: "
            "the key must be an API v2 key belonging to that username."
        )
    elif status == 403:
        message = f"TextMagic denied access (403; {said}). The user lacks the right for this operation."
    elif status == 404 and subject is not None:
        message = (
            f"Session {subject} does not exist on this account (404). "
            "Use get_all_message_sessions to find valid session ids."
        )
    elif status == 400 or status == 422:
        problems = [f"{name}: {'; '.join(msgs)}" for name, msgs in fields.items()] + common
        listed = " | ".join(problems) if problems else detail or "no details given"
        message = f"TextMagic rejected the request ({status}): {listed}."
    elif status == 429:
        message = (
            "TextMagic's rate limit was reached (429). This is temporary: wait a few seconds, then try again."
        )
    elif status >= 500:
        what = "is in maintenance" if status == 503 else "had an internal error"
        message = f"TextMagic {what} ({status}; {said}). This is temporary: try again in a minute."
    else:
        message = f"TextMagic answered HTTP {status} ({said})."
    return TextMagicError(message, status=code or status)


def _error_body(response: httpx2.Response) -> tuple[int | None, str, dict[str, list[str]], list[str]]:
    """Read TextMagic's error body (code, message, errors.fields, errors.common), tolerating any shape."""
    try:
        body = response.json()
    except ValueError:
        return None, "", {}, []
    if not isinstance(body, dict):
        return None, "", {}, []
    code = body.get("code")
    errors = body.get("errors")
    errors = errors if isinstance(errors, dict) else {}
    raw_fields = errors.get("fields")
    raw_common = errors.get("common")
    fields = {
        _clip(name): [_clip(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
        for name, msgs in (raw_fields.items() if isinstance(raw_fields, dict) else ())
    }
    common = [_clip(m) for m in raw_common] if isinstance(raw_common, list) else []
    return (code if isinstance(code, int) else None), _clip(body.get("message")), fields, common


def _clip(value: object) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return text if len(text) <= _MAX_ERROR_TEXT else text[: _MAX_ERROR_TEXT - 1] + "…"
