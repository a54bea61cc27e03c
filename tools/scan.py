"""Reading many TextMagic pages for one answer: the sessions a filter matches, and the messages of sessions.

Pages are fetched concurrently; the TextMagic client's pacer keeps them under the account's rate limit, and a
bound on the pages in flight keeps memory flat however large the account. Each page is handed on as it comes
and then dropped.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import anyio
import anyio.abc

from server.state.context import ToolContext, app_context
from server.textmagic import TextMagicError
from server.textmagic.models import MessageOut, MessageSession, SessionsPage
from tools.filters import SessionFilter

PAGE = 100
# Pages in flight at once: enough to fill the rate limit at TextMagic's latency, few enough to bound memory.
CONCURRENT_PAGES = 16

T = TypeVar("T")


@dataclass(frozen=True)
class Scan:
    """The sessions a filter matched, newest first, and how far the scan got."""

    sessions: list[MessageSession]
    scanned: int
    complete: bool
    reason: str | None = None


async def scan_sessions(ctx: ToolContext, flt: SessionFilter) -> Scan:
    """Read the session list newest first, up to TEXTMAGIC_SCAN_LIMIT sessions, stopping at the first page whose
    sessions all started before ``since``.

    Without ``since`` every page is needed, and they are read CONCURRENT_PAGES at a time. With it, each page says
    whether the next is needed, so the pages read at once grow from one (1, 2, 4, ...): a scan of yesterday reads
    a page or two, one of a year does not read them one by one.
    """
    app = app_context(ctx)
    limit = app.settings.scan_limit
    first = await app.textmagic.list_sessions(page=1, limit=PAGE)
    last_page = min(first.page_count, math.ceil(limit / PAGE))
    matched: list[MessageSession] = []
    scanned = 0
    number = 1
    window = 1
    pages: Sequence[SessionsPage] = [first]
    while True:
        for page in pages:
            scanned += len(page.resources)
            matched += [session for session in page.resources if flt.matches(session)]
            older = [session for session in page.resources if flt.before_start(session)]
            if page.resources and len(older) == len(page.resources):
                return Scan(matched, scanned, complete=True)
        await ctx.report_progress(scanned, min(first.page_count * PAGE, limit), f"{scanned} sessions scanned")
        if number >= last_page:
            break
        window = min(window * 2, CONCURRENT_PAGES) if flt.start is not None else CONCURRENT_PAGES
        numbers = range(number + 1, min(number + window, last_page) + 1)
        pages = await gather(
            [functools.partial(app.textmagic.list_sessions, page=n, limit=PAGE) for n in numbers]
        )
        number = numbers[-1]
    if first.page_count > last_page:
        return Scan(
            matched,
            scanned,
            complete=False,
            reason=f"stopped after the newest {scanned} sessions (TEXTMAGIC_SCAN_LIMIT); narrow the filter with "
            "since and until to reach older ones",
        )
    return Scan(matched, scanned, complete=True)


async def each_message_page(
    ctx: ToolContext,
    sessions: Sequence[MessageSession],
    consume: Callable[[MessageSession, list[MessageOut]], None],
    *,
    include_deleted: bool,
) -> int:
    """Hand every page of messages of ``sessions`` to ``consume`` as it arrives; the number of pages read."""
    app = app_context(ctx)
    limiter = anyio.CapacityLimiter(CONCURRENT_PAGES)
    read = 0
    expected = len(sessions)
    failures: list[TextMagicError] = []

    async def fetch(session: MessageSession, number: int, group: anyio.abc.TaskGroup) -> None:
        nonlocal read, expected
        async with limiter:
            try:
                page = await app.textmagic.get_session_messages(
                    session.id, page=number, limit=PAGE, statuses=None, include_deleted=include_deleted
                )
            except TextMagicError as exc:
                # Kept aside rather than raised: a task group would wrap it, and the model lose the explanation.
                failures.append(exc)
                group.cancel_scope.cancel()
                return
        if number == 1:
            expected += max(page.page_count - 1, 0)
            for later in range(2, page.page_count + 1):
                group.start_soon(fetch, session, later, group)
        consume(session, page.resources)
        read += 1
        await ctx.report_progress(read, expected, f"{read} of {expected} pages read")

    async with anyio.create_task_group() as group:
        for session in sessions:
            group.start_soon(fetch, session, 1, group)
    if failures:
        raise failures[0]
    return read


async def gather(calls: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run ``calls`` concurrently (CONCURRENT_PAGES at a time), their results in order; the first TextMagicError
    stops the rest and is raised."""
    limiter = anyio.CapacityLimiter(CONCURRENT_PAGES)
    results: list[Any] = [None] * len(calls)
    failures: list[TextMagicError] = []

    async def run(index: int, group: anyio.abc.TaskGroup) -> None:
        async with limiter:
            try:
                results[index] = await calls[index]()
            except TextMagicError as exc:
                failures.append(exc)
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for index in range(len(calls)):
            group.start_soon(run, index, group)
    if failures:
        raise failures[0]
    return cast(list[T], results)
