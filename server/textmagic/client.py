"""The TextMagic REST client: one ``httpx2.AsyncClient`` for the server's lifetime, the six operations, errors
the model can act on."""

from __future__ import annotations

import base64
import json
import logging
import ssl
import zlib
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import anyio
import httpx2
from pydantic import BaseModel, ValidationError

from server import __version__
from server.observability import metrics
from server.observability.tracing import span
from server.textmagic.budget import current_budget
from server.textmagic.errors import (
    Failure,
    given_up,
    maybe_carried_out,
    status_error,
    unconfirmed,
    unreadable,
)
from server.textmagic.models import MessageSession, MessagesPage, SessionsPage, SessionStat
from server.textmagic.pacer import Pacer
from server.textmagic.retry import RETRY_STATUSES, RetryPolicy, retry_after_seconds
from server.textmagic.untrusted import neutralise_json
from server.textmagic.urls import without_credentials

ModelT = TypeVar("ModelT", bound=BaseModel)

USER_AGENT = f"textmagic-sessions-mcp/{__version__}"
# TextMagic allows 50 requests/s per account: more requests in flight than that cannot help.
MAX_CONNECTIONS = 50
# Model turns take seconds and people pause to read: connections outlive them, so most calls of a
# conversation skip the TCP and TLS handshakes. A connection TextMagic closed meanwhile is replaced.
DEFAULT_KEEPALIVE = 120.0
# Far beyond any page TextMagic sends (100 messages with long texts), far below what memory can hold: an
# answer larger than this once decompressed is not TextMagic's, and is not read further.
MAX_ANSWER_BYTES = 8 * 2**20
# What the client can decompress itself, under that bound.
_DECOMPRESSORS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}

# httpcore2 (under httpx2) traces each step of a request at DEBUG, its SOCKS handshake with the proxy's
# password in it: none of that reaches this server's log, whatever its level.
logging.getLogger("httpcore2").setLevel(logging.INFO)

# The HTTP statuses TextMagic answered during the current tool call, for its log line.
_statuses: ContextVar[list[int] | None] = ContextVar("textmagic_statuses", default=None)


def track_statuses() -> list[int]:
    """From now on in this task (and tasks it starts), record every TextMagic status into the returned list."""
    statuses: list[int] = []
    _statuses.set(statuses)
    return statuses


@dataclass
class Health:
    """What TextMagic's latest answer (or its absence) said: ``problem`` is None while it answers and accepts the
    credentials; ``seen_at``, when that was learnt (anyio's clock; -inf before any request)."""

    problem: str | None = None
    seen_at: float = float("-inf")

    @property
    def state(self) -> str:
        """``unknown`` before any request, else ``failing`` or ``answering``."""
        if self.seen_at == float("-inf"):
            return "unknown"
        return "failing" if self.problem else "answering"

    def saw(self, outcome: httpx2.Response | Failure) -> None:
        status = outcome.status_code if isinstance(outcome, httpx2.Response) else None
        if status in (401, 403):
            self.problem = (
                f"TextMagic refused the credentials (HTTP {status}): "
                "check TEXTMAGIC_USERNAME and TEXTMAGIC_API_KEY"
            )
        elif isinstance(outcome, Failure) and not outcome.throttled:
            self.problem = outcome.problem
        else:
            self.problem = None
        self.seen_at = anyio.current_time()


class TextMagicClient:
    """Typed access to TextMagic's message-sessions API, over keep-alive connections every call shares.

    ``transport`` replaces the network (the sandbox's in-process emulator, or a test's transport); ``proxy`` is
    a proxy URL (HTTP or SOCKS5) to reach TextMagic through; ``keepalive``, the seconds an idle connection is
    kept for the next call.
    """

    def __init__(
        self,
        *,
        base_url: str,
        username: str,
        api_key: str,
        timeout: float,
        pacer: Pacer,
        retry: RetryPolicy,
        proxy: str | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        keepalive: float = DEFAULT_KEEPALIVE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        # httpx2.Proxy keeps the proxy's password out of its repr; the messages name the proxy without it.
        self._proxy = httpx2.Proxy(proxy) if proxy else None
        self._proxy_shown = without_credentials(proxy) if proxy else None
        self._timeout = timeout
        self._pacer = pacer
        self._retry = retry
        self._transport = transport
        self._keepalive = keepalive
        credentials = base64.b64encode(f"{username}:{api_key}".encode()).decode("ascii")
        # httpx2.Headers, whose repr masks the Authorization value: the key exists nowhere else here.
        self._headers = httpx2.Headers(
            {
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "Accept-Encoding": ", ".join(_DECOMPRESSORS),
                "Authorization": f"Basic {credentials}",
            }
        )
        self._http: httpx2.AsyncClient | None = None
        self.health = Health()

    async def __aenter__(self) -> TextMagicClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        elif self._transport is not None:
            await self._transport.aclose()

    async def list_sessions(self, *, page: int, limit: int) -> SessionsPage:
        params = {"page": page, "limit": limit}
        return await self._get("/api/v2/sessions", SessionsPage, params=params, at_most=limit)

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
            f"/api/v2/sessions/{session_id}/messages",
            MessagesPage,
            params=params,
            subject=session_id,
            at_most=limit,
        )

    async def delete_session(self, session_id: int) -> None:
        """Raises UncertainOutcome when TextMagic's answer does not confirm the delete."""
        response = await self._request("DELETE", f"/api/v2/sessions/{session_id}", subject=session_id)
        _confirmed(response, "DELETE", self.base_url)

    async def delete_sessions(self, session_ids: Iterable[int]) -> None:
        """Raises UncertainOutcome when the request may have been carried out despite the failure, or when
        TextMagic's answer does not confirm the delete. Never deletes every session: only ids are sent."""
        body = {"ids": ",".join(str(i) for i in session_ids), "all": 0}
        response = await self._request(
            "POST", "/api/v2/sessions/delete", json=body, resend_if_maybe_received=False
        )
        _confirmed(response, "POST", self.base_url)

    async def _get(
        self,
        path: str,
        model: type[ModelT],
        *,
        params: Mapping[str, Any] | None = None,
        subject: int | None = None,
        at_most: int | None = None,
    ) -> ModelT:
        """The answer as ``model``; ``at_most``: the items a page may hold (more are left unread)."""
        response = await self._request("GET", path, params=params, subject=subject)
        try:
            body = json.loads(response.content)
        except ValueError:
            raise unreadable("GET", path, ["body: not JSON"]) from None
        if at_most is not None and isinstance(body, dict) and isinstance(body.get("resources"), list):
            # A page longer than asked for is not read past the limit: TextMagic never sends one.
            body["resources"] = body["resources"][:at_most]
        try:
            return model.model_validate(neutralise_json(body))
        except ValidationError as exc:
            problems = sorted({".".join(str(p) for p in e["loc"]) or "body" for e in exc.errors()})
            raise unreadable("GET", path, problems) from None

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
        """Send, retrying transient failures within the retry policy. Two rules protect the account:

        - a request that must not run twice (``resend_if_maybe_received=False``: a bulk delete) is sent again
          only when it provably never left; once it may have reached TextMagic, UncertainOutcome is raised;
        - a 404 to a DELETE sent again after an earlier attempt may have arrived means that attempt deleted it.
        """
        started: float | None = None
        attempts = 0
        maybe_received = False
        budget = current_budget()
        while True:
            attempts += 1
            if budget is not None:
                budget.spend()
            await self._paced()
            # The retry budget counts from the first send: waiting for a turn under load is not failing.
            started = anyio.current_time() if started is None else started
            outcome = await self._attempt(method, path, params, json)
            if isinstance(outcome, httpx2.Response):
                if outcome.status_code == 404 and method == "DELETE" and maybe_received:
                    return outcome
                if outcome.is_error:
                    raise status_error(outcome, subject)
                return outcome
            if outcome.throttled:
                # The account is busier than this process knew: everyone slows down.
                await self._pacer.throttled(outcome.retry_after)
            maybe_received = maybe_received or outcome.reached
            if outcome.reached and not resend_if_maybe_received:
                raise maybe_carried_out(outcome, self.base_url)
            elapsed = anyio.current_time() - started
            delay = self._retry.delay(outcome, attempts, elapsed)
            if delay is None and maybe_received and method == "DELETE":
                # Given up, but an attempt may have been carried out: only a look can tell.
                raise maybe_carried_out(outcome, self.base_url)
            if delay is None:
                raise given_up(
                    outcome,
                    attempts=attempts,
                    elapsed=elapsed,
                    subject=subject,
                    base_url=self.base_url,
                    proxy=self._proxy_shown,
                )
            await anyio.sleep(delay)

    async def _paced(self) -> None:
        """Wait for a slot under the account's rate limit, measured."""
        metrics.PACER_WAITING.inc()
        began = anyio.current_time()
        try:
            await self._pacer.wait(at_most=self._retry.budget)
        finally:
            metrics.PACER_WAITING.dec()
        metrics.paced(anyio.current_time() - began)

    async def _attempt(
        self, method: str, path: str, params: Mapping[str, Any] | None, json: Mapping[str, Any] | None
    ) -> httpx2.Response | Failure:
        """One exchange, traced and counted: TextMagic's final answer, or a Failure to weigh for another try."""
        began = anyio.current_time()
        with span(
            f"TextMagic {method}", "textmagic", **{"http.request.method": method, "url.path": path}
        ) as traced:
            outcome = await self._exchange_once(method, path, params, json)
            status = (
                str(outcome.status_code) if isinstance(outcome, httpx2.Response) else _failure_kind(outcome)
            )
            traced.set_attribute("http.response.status_code", status)
        metrics.UPSTREAM_REQUESTS.labels(method, status).inc()
        metrics.UPSTREAM_SECONDS.labels(method).observe(anyio.current_time() - began)
        self.health.saw(outcome)
        return outcome

    async def _exchange_once(
        self, method: str, path: str, params: Mapping[str, Any] | None, json: Mapping[str, Any] | None
    ) -> httpx2.Response | Failure:
        """One exchange, under one deadline for all of it (connect, send, receive)."""
        try:
            with anyio.fail_after(self._timeout):
                response = await self._exchange(method, path, params, json)
        except TimeoutError:
            # Whether it left is not known; what may have arrived is treated as arrived.
            return Failure(reached=True, problem=f"no answer within {self._timeout:g} s (TEXTMAGIC_TIMEOUT)")
        except httpx2.RequestError as exc:
            return self._classify(exc)
        except _TooLarge:
            return Failure(
                reached=True,
                retryable=False,
                problem=f"TextMagic at {self.base_url} answered {method} {path} with more than "
                f"{MAX_ANSWER_BYTES // 2**20} MB once decompressed, which no TextMagic answer is, so it was not "
                "read further. Check TEXTMAGIC_BASE_URL and any proxy between this server and TextMagic.",
            )
        if (statuses := _statuses.get()) is not None:
            statuses.append(response.status_code)
        if response.status_code in RETRY_STATUSES:
            throttled = response.status_code == 429
            return Failure(
                # A request refused for the rate limit was not carried out.
                reached=not throttled,
                problem=f"HTTP {response.status_code}",
                answer=response,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
                throttled=throttled,
            )
        return response

    async def _exchange(
        self, method: str, path: str, params: Mapping[str, Any] | None, json: Mapping[str, Any] | None
    ) -> httpx2.Response:
        """Send, and read the answer's body, decompressed here so that its size is bounded as it grows."""
        http = self._connections()
        response = await http.send(http.build_request(method, path, params=params, json=json), stream=True)
        try:
            body = await _bounded_body(response)
        finally:
            await response.aclose()
        headers = [
            (k, v) for k, v in response.headers.items() if k not in ("content-encoding", "content-length")
        ]
        return httpx2.Response(response.status_code, headers=headers, content=body, request=response.request)

    def _classify(self, exc: httpx2.RequestError) -> Failure:
        """Whether a failed exchange may have reached TextMagic, and whether trying again can help."""
        # A proxy that refuses the tunnel answers before anything reaches TextMagic.
        if isinstance(
            exc,
            httpx2.ConnectError | httpx2.ConnectTimeout | httpx2.PoolTimeout | httpx2.ProxyError,
        ):
            if (refusal := _certificate_refusal(exc)) is not None:
                via = f" through the proxy {self._proxy_shown}" if self._proxy_shown else ""
                return Failure(
                    reached=False,
                    retryable=False,
                    problem=f"TextMagic's certificate at {self.base_url}{via} could not be verified ({refusal}), "
                    "so nothing was sent. If a proxy or firewall on this network inspects TLS, point "
                    "SSL_CERT_FILE at its certificate authority; otherwise check TEXTMAGIC_BASE_URL.",
                )
            return Failure(reached=False, problem=f"could not connect ({type(exc).__name__}: {exc})")
        if isinstance(exc, httpx2.TimeoutException):
            return Failure(reached=True, problem=f"no answer within {self._timeout:g} s (TEXTMAGIC_TIMEOUT)")
        if isinstance(exc, httpx2.DecodingError):
            return Failure(reached=True, problem="its answer could not be decompressed")
        return Failure(reached=True, problem=f"the connection failed ({type(exc).__name__})")

    def _connections(self) -> httpx2.AsyncClient:
        """The HTTP client, built on the first request rather than at start.

        Building it loads the CA certificates for TLS, which every MCP client would otherwise wait for before
        the tools are even listed.
        """
        if self._http is None:
            transport = self._transport or httpx2.AsyncHTTPTransport(
                limits=httpx2.Limits(
                    max_connections=MAX_CONNECTIONS,
                    max_keepalive_connections=MAX_CONNECTIONS,
                    keepalive_expiry=self._keepalive,
                ),
                proxy=self._proxy,
            )
            self._http = httpx2.AsyncClient(
                base_url=self.base_url,
                headers=self._headers,
                timeout=httpx2.Timeout(self._timeout, connect=min(self._timeout, 10.0)),
                transport=transport,
                # The proxy is the one the configuration chose; nothing else comes from the environment.
                trust_env=False,
            )
        return self._http


def _failure_kind(failure: Failure) -> str:
    """A metric's status for an exchange: TextMagic's, or what happened instead."""
    if failure.answer is not None:
        return str(failure.answer.status_code)
    return "connection" if not failure.reached else "no_answer"


class _TooLarge(Exception):
    """An answer grew past MAX_ANSWER_BYTES."""


async def _bounded_body(response: httpx2.Response) -> bytes:
    """The body of ``response``, decompressed, at most MAX_ANSWER_BYTES (else _TooLarge): a small answer that
    inflates to gigabytes stops at the bound, one chunk at a time."""
    if response.is_stream_consumed:
        # Read whole already (a test's transport handing over bytes): nothing left to bound as it grows.
        if len(response.content) > MAX_ANSWER_BYTES:
            raise _TooLarge
        return response.content
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", *_DECOMPRESSORS):
        raise httpx2.DecodingError(f"unsupported content encoding {encoding[:20]!r}")
    inflater = zlib.decompressobj(_DECOMPRESSORS[encoding]) if encoding in _DECOMPRESSORS else None
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        pending = chunk
        while pending:
            try:
                data = inflater.decompress(pending, MAX_ANSWER_BYTES + 1 - size) if inflater else pending
            except zlib.error as exc:
                raise httpx2.DecodingError(str(exc)) from None
            pending = inflater.unconsumed_tail if inflater else b""
            size += len(data)
            if size > MAX_ANSWER_BYTES:
                raise _TooLarge
            parts.append(data)
    return b"".join(parts)


def _confirmed(response: httpx2.Response, method: str, base_url: str) -> None:
    """Raise UncertainOutcome unless ``response`` is TextMagic confirming a delete: 204, or 200 with an empty or
    JSON body (a 404 only reaches here when an earlier attempt deleted it). A redirect, or a web page from a
    captive portal or a proxy, is not a confirmation."""
    status = response.status_code
    if status in (204, 404) or (status == 200 and _empty_or_json(response.content)):
        return
    location = response.headers.get("location")
    what = (
        f"a redirect ({status}) to another address" if location else f"HTTP {status} with an unexpected body"
    )
    raise unconfirmed(method, what, base_url)


def _empty_or_json(body: bytes) -> bool:
    if not body.strip():
        return True
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def _certificate_refusal(exc: BaseException) -> str | None:
    """Why the server's TLS certificate was refused, when that is what ``exc`` comes from."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return str(cause.verify_message)
        cause = cause.__cause__ or cause.__context__
    return None
