"""A TextMagic emulator for the six message-session endpoints: an ASGI app with in-memory, seeded state.

Faithful to TextMagic's published API where it is documented: paths, camelCase bodies, Basic and X-TM header
auth, 204 on deletes, error bodies, ``limit`` outside 1..100 replaced by 10, ``pageCount``, stat counts that
agree with the messages. Where TextMagic is silent, the choices are written down here:
- a ``page`` below 1 or not a number is read as 1; a page past the last one is empty;
- ``statuses`` takes a comma-separated list; an unknown letter, or ``includeDeleted`` other than 0/1, is a 400;
- messages of an unknown session are an empty page (the spec lists no 404 there);
- bulk delete ignores ids that do not exist.
Every request is recorded (``requests``). For tests, failures can be queued (``fail_next``: statuses with or
without Retry-After, stalls past a timeout, dropped connections, malformed JSON, unexpected shapes), every
answer delayed (``latency``), and TextMagic's rate limit played (``limit_rate``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from server.sandbox.seed import FILTERABLE_STATUSES, STAT_BUCKETS, SeedData, generate

SANDBOX_USERNAME = "sandbox"
SANDBOX_API_KEY = "sandbox-key-not-a-secret"

Json = Any


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the emulator saw it; the key itself is never kept, only whether it matched."""

    method: str
    path: str
    query: dict[str, str]
    body: Json
    auth_scheme: str | None
    username: str | None
    authorized: bool
    user_agent: str | None
    received_at: float
    peer: str | None


@dataclass
class _Fault:
    status: int
    body: Json
    path: str | None
    method: str | None
    remaining: int
    headers: dict[str, str]
    stall: float
    reset: bool
    raw: bytes | None
    carry_out: bool
    skip: int


class Emulator:
    """The emulated account; ``app`` is the ASGI application serving it."""

    def __init__(
        self,
        *,
        username: str = SANDBOX_USERNAME,
        api_key: str = SANDBOX_API_KEY,
        seed: int = 7,
        anchor: datetime | None = None,
    ) -> None:
        self._username = username
        self._api_key = api_key
        self._seed = seed
        self._anchor = anchor
        self.data = SeedData()
        self.requests: list[RecordedRequest] = []
        # Seconds every answer is held back, to play a slow TextMagic.
        self.latency = 0.0
        self._arrivals = threading.Condition()
        self._rate_limit: int | None = None
        self._recent: deque[float] = deque()
        self.rejected_for_rate = 0
        # Requests being answered now, and the most there ever were at once: how concurrently a client reads.
        self._in_flight = 0
        self.most_at_once = 0
        self.deleted_ids: list[int] = []
        self._faults: list[_Fault] = []
        self.reset()
        self.app = Starlette(
            routes=[
                Route("/api/v2/sessions", self._endpoint(self._list_sessions), methods=["GET"]),
                Route("/api/v2/sessions/delete", self._endpoint(self._delete_bulk), methods=["POST"]),
                Route("/api/v2/sessions/{id:int}", self._endpoint(self._get_session), methods=["GET"]),
                Route("/api/v2/sessions/{id:int}", self._endpoint(self._delete_session), methods=["DELETE"]),
                Route("/api/v2/sessions/{id:int}/stat", self._endpoint(self._stat), methods=["GET"]),
                Route("/api/v2/sessions/{id:int}/messages", self._endpoint(self._messages), methods=["GET"]),
            ],
            exception_handlers={HTTPException: _http_error},
        )

    def reset(self) -> None:
        """Back to the seeded account, with no recorded requests and no queued faults."""
        self.data = generate(self._seed, self._anchor)
        self.requests.clear()
        self.deleted_ids.clear()
        self._faults.clear()
        self.latency = 0.0
        self.limit_rate(None)
        self.rejected_for_rate = 0
        self.most_at_once = 0

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> bool:
        """Block (a test's thread, not the server's) until ``count`` requests have arrived."""
        with self._arrivals:
            return self._arrivals.wait_for(lambda: len(self.requests) >= count, timeout)

    def fail_next(
        self,
        status: int = 500,
        body: Json = None,
        *,
        times: int = 1,
        path: str | None = None,
        method: str | None = None,
        headers: dict[str, str] | None = None,
        stall: float = 0.0,
        reset: bool = False,
        raw: bytes | None = None,
        carry_out: bool = False,
        skip: int = 0,
    ) -> None:
        """Spoil the next ``times`` requests (those to ``path`` / with ``method`` only, if given).

        Each is answered ``status`` with ``body`` (or the bytes ``raw``, for malformed JSON) and ``headers``
        (such as Retry-After); after ``stall`` seconds if given (to outlast a client's timeout); or, with
        ``reset``, cut off after the status line, as a dropped connection. A spoilt request is not carried out,
        unless ``carry_out``: then it is, and only its answer is lost. The first ``skip`` matching requests
        pass unharmed.
        """
        default = {"code": status, "message": "Injected failure."}
        spoilt = default if body is None else body
        self._faults.append(
            _Fault(status, spoilt, path, method, times, headers or {}, stall, reset, raw, carry_out, skip)
        )

    def limit_rate(self, per_second: int | None) -> None:
        """Answer 429, as TextMagic does, to requests beyond ``per_second`` in any second; None lifts it."""
        self._rate_limit = per_second
        self._recent.clear()

    @property
    def session_ids(self) -> set[int]:
        return set(self.data.sessions)

    def _endpoint(self, handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            raw = await request.body()
            try:
                body: Json = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            scheme, username, authorized = self._authenticate(request)
            self._record(
                RecordedRequest(
                    method=request.method,
                    path=request.url.path,
                    query=dict(request.query_params),
                    body=body,
                    auth_scheme=scheme,
                    username=username,
                    authorized=authorized,
                    user_agent=request.headers.get("user-agent"),
                    received_at=time.monotonic(),
                    peer=f"{request.client.host}:{request.client.port}" if request.client else None,
                )
            )
            self._in_flight += 1
            self.most_at_once = max(self.most_at_once, self._in_flight)
            try:
                return await self._answer(handler, request, body, authorized)
            finally:
                self._in_flight -= 1

        return endpoint

    async def _answer(self, handler: Any, request: Request, body: Json, authorized: bool) -> Response:
        """The answer to a recorded request, after the latency, rate limit and faults played."""
        if self.latency:
            await anyio.sleep(self.latency)
        if self._over_rate_limit():
            return _error(429, "Too Many Requests.")
        fault = self._take_fault(request.method, request.url.path)
        if fault is not None and not fault.carry_out:
            return await _spoilt(fault)
        if not authorized:
            return _error(401, "Wrong username and token combination.")
        response: Response = handler(request, body)
        return await _spoilt(fault) if fault is not None else response

    def _record(self, request: RecordedRequest) -> None:
        with self._arrivals:
            self.requests.append(request)
            self._arrivals.notify_all()

    def _authenticate(self, request: Request) -> tuple[str | None, str | None, bool]:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                username, _, key = base64.b64decode(header[6:]).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return "basic", None, False
            return "basic", username, self._matches(username, key)
        if "x-tm-username" in request.headers:
            username = request.headers["x-tm-username"]
            return "x-tm", username, self._matches(username, request.headers.get("x-tm-key", ""))
        return None, None, False

    def _matches(self, username: str, key: str) -> bool:
        user_ok = hmac.compare_digest(username.encode(), self._username.encode())
        return hmac.compare_digest(key.encode(), self._api_key.encode()) and user_ok

    def _over_rate_limit(self) -> bool:
        if self._rate_limit is None:
            return False
        now = time.monotonic()
        while self._recent and now - self._recent[0] >= 1.0:
            self._recent.popleft()
        if len(self._recent) >= self._rate_limit:
            self.rejected_for_rate += 1
            return True
        self._recent.append(now)
        return False

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if (fault.path is None or fault.path == path) and (
                fault.method is None or fault.method == method
            ):
                if fault.skip > 0:
                    fault.skip -= 1
                    return None
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _list_sessions(self, request: Request, _body: Json) -> Response:
        newest_first = sorted(self.data.sessions.values(), key=lambda s: s["id"], reverse=True)
        return _paginated(newest_first, request)

    def _get_session(self, request: Request, _body: Json) -> Response:
        session = self.data.sessions.get(request.path_params["id"])
        return JSONResponse(session) if session else _not_found()

    def _delete_session(self, request: Request, _body: Json) -> Response:
        session_id = request.path_params["id"]
        if session_id not in self.data.sessions:
            return _not_found()
        self._remove(session_id)
        return Response(status_code=204)

    def _stat(self, request: Request, _body: Json) -> Response:
        session_id = request.path_params["id"]
        if session_id not in self.data.sessions:
            return _not_found()
        include_deleted = _flag(request, "includeDeleted")
        if include_deleted is None:
            return _invalid({"includeDeleted": ["The value you selected is not a valid choice."]})
        counts = dict.fromkeys(("failed", "delivered", "accepted", "rejected", "scheduled", "all", "sent"), 0)
        for message in self.data.messages[session_id]:
            if include_deleted or not message["deleted"]:
                counts["all"] += 1
                counts[STAT_BUCKETS[message["status"]]] += 1
        return JSONResponse(counts)

    def _messages(self, request: Request, _body: Json) -> Response:
        include_deleted = _flag(request, "includeDeleted")
        if include_deleted is None:
            return _invalid({"includeDeleted": ["The value you selected is not a valid choice."]})
        raw_statuses = request.query_params.get("statuses")
        wanted = set(raw_statuses.split(",")) if raw_statuses else None
        if wanted is not None and not wanted <= FILTERABLE_STATUSES:
            return _invalid({"statuses": ["The value you selected is not a valid choice."]})
        messages = [
            m
            for m in self.data.messages.get(request.path_params["id"], [])
            if (include_deleted or not m["deleted"]) and (wanted is None or m["status"] in wanted)
        ]
        return _paginated(messages, request)

    def _delete_bulk(self, _request: Request, body: Json) -> Response:
        if not isinstance(body, dict):
            return _invalid({}, common=["The request body must be a JSON object."])
        delete_all = body.get("all", 0)
        if type(delete_all) is not int or delete_all not in (0, 1):
            return _invalid({"all": ["This value should be 0 or 1."]})
        if delete_all == 1:
            for session_id in list(self.data.sessions):
                self._remove(session_id)
            return Response(status_code=204)
        ids = body.get("ids")
        if not isinstance(ids, str) or not ids:
            return _invalid({"ids": ["This value should be a comma-separated list of ids."]})
        try:
            wanted = [int(part) for part in ids.split(",")]
        except ValueError:
            return _invalid({"ids": ["This value should be a comma-separated list of ids."]})
        for session_id in wanted:
            if session_id in self.data.sessions:
                self._remove(session_id)
        return Response(status_code=204)

    def _remove(self, session_id: int) -> None:
        del self.data.sessions[session_id]
        del self.data.messages[session_id]
        self.deleted_ids.append(session_id)


async def _spoilt(fault: _Fault) -> Response:
    if fault.stall:
        await anyio.sleep(fault.stall)
    if fault.reset:
        return _DroppedConnection()
    if fault.raw is not None:
        return Response(
            fault.raw, status_code=fault.status, headers=fault.headers, media_type="application/json"
        )
    return JSONResponse(fault.body, status_code=fault.status, headers=fault.headers)


class _DroppedConnection(Response):
    """Sends the status line and headers, then fails: the server drops the connection mid-answer."""

    def __init__(self) -> None:
        super().__init__(status_code=200, media_type="application/json")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        raise ConnectionResetError("emulated connection reset")


def _paginated(items: list[dict[str, Json]], request: Request) -> Response:
    limit = _int(request.query_params.get("limit"), 10)
    if not 1 <= limit <= 100:
        limit = 10
    page = max(_int(request.query_params.get("page"), 1), 1)
    start = (page - 1) * limit
    return JSONResponse(
        {
            "page": page,
            "pageCount": math.ceil(len(items) / limit),
            "limit": limit,
            "resources": items[start : start + limit],
        }
    )


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _flag(request: Request, name: str) -> bool | None:
    value = request.query_params.get(name, "0")
    return {"0": False, "1": True}.get(value)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"code": status, "message": message}, status_code=status)


def _not_found() -> JSONResponse:
    return _error(404, "Resource does not exist.")


def _invalid(fields: dict[str, list[str]], common: list[str] | None = None) -> JSONResponse:
    body = {"code": 400, "message": "Validation Failed", "errors": {"common": common or [], "fields": fields}}
    return JSONResponse(body, status_code=400)


async def _http_error(_request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    return (
        _not_found()
        if status == 404
        else _error(status, "Method not allowed." if status == 405 else "Error.")
    )
