"""Reading many TextMagic pages for one answer: the sessions a filter matches, and the messages of sessions
(settled ones from the store, when kept there).

Pages are fetched concurrently; the TextMagic client's pacer keeps them under the account's rate limit, and a
bound on the pages in flight keeps memory flat however large the account. Each page is handed on as it comes
and then dropped.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar, cast

import anyio
import anyio.abc
import anyio.lowlevel

from server.state.context import AppContext, ToolContext, app_context
from server.state.store import Message, settled
from server.textmagic import BudgetSpent, TextMagicError
from server.textmagic.models import MessageSession, SessionsPage
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
        try:
            pages = await gather(
                [functools.partial(app.textmagic.list_sessions, page=n, limit=PAGE) for n in numbers]
            )
        except BudgetSpent:
            return Scan(
                matched,
                scanned,
                complete=False,
                reason=f"stopped at this call's budget of requests to TextMagic (TEXTMAGIC_CALL_BUDGET) after the "
                f"newest {scanned} sessions; narrow the filter with since and until",
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


@dataclass(frozen=True)
class Reading:
    """How far reading the messages of some sessions got, and how many came from the store of settled sessions
    (and when the oldest of those was read, seconds since the epoch)."""

    pages: int
    messages: int
    # Sessions whose every page was read.
    sessions: int
    complete: bool = True
    reason: str | None = None
    stored: int = 0
    stored_since: float | None = None


Consumer = Callable[[MessageSession, Sequence[Message]], None]
# Stored messages are handed on this many at a time, the event loop served in between.
STORED_CHUNK = 5000


async def each_message_page(
    ctx: ToolContext,
    sessions: Sequence[MessageSession],
    consume: Consumer,
    *,
    include_deleted: bool,
) -> Reading:
    """Hand every message of ``sessions`` to ``consume``, a page (or a stored chunk) at a time.

    Settled sessions kept in the store come from there; the others are read from TextMagic (deleted messages
    too, flagged, and left out here unless ``include_deleted``), and kept once read whole if every message is
    final. CONCURRENT_PAGES workers take the pages in turn: every session's first page, then the further pages
    each first page announced, kept as a range per session, never as a task or an entry per page, so memory
    stays flat whatever page count TextMagic claims; the call's budget bounds the requests. When the budget is
    spent, what was read stands and the reading says how far it got.
    """
    app = app_context(ctx)
    store = None if app.settings.cache_fresh else app.store
    entries = [await store.get(session.id) if store is not None else None for session in sessions]
    for session, entry in zip(sessions, entries, strict=True):
        if entry is not None:
            for start in range(0, len(entry.messages), STORED_CHUNK):
                chunk = entry.messages[start : start + STORED_CHUNK]
                consume(session, chunk if include_deleted else [m for m in chunk if not m.deleted])
                await anyio.lowlevel.checkpoint()
    stored = [entry.read_at for entry in entries if entry is not None]
    unread = [session for session, entry in zip(sessions, entries, strict=True) if entry is None]
    reading = await _read_pages(ctx, unread, consume, include_deleted=include_deleted)
    return replace(reading, stored=len(stored), stored_since=min(stored, default=None))


async def _read_pages(
    ctx: ToolContext, sessions: Sequence[MessageSession], consume: Consumer, *, include_deleted: bool
) -> Reading:
    """Every page of ``sessions`` from TextMagic, the settled ones kept in the store once read whole."""
    app = app_context(ctx)
    # Pages still to read: [session, next page, last page], the first pages of all sessions first.
    todo: deque[list[Any]] = deque([session, 1, 1] for session in sessions)
    left = {session.id: 1 for session in sessions}
    # Each session's messages as they come, while it may still turn out settled (and a store keeps them).
    kept: dict[int, list[Message]] = {session.id: [] for session in sessions} if app.store is not None else {}
    expected = len(sessions)
    read = messages = busy = 0
    stopped: BudgetSpent | None = None
    failures: list[TextMagicError] = []
    turn = anyio.Condition()

    async def worker(group: anyio.abc.TaskGroup) -> None:
        nonlocal read, messages, busy, expected, stopped
        while True:
            async with turn:
                # A first page in flight may still announce more pages.
                while not todo and busy:
                    await turn.wait()
                if not todo:
                    return
                session, number, last = todo[0]
                if number >= last:
                    todo.popleft()
                else:
                    todo[0][1] += 1
                busy += 1
            try:
                page = await app.textmagic.get_session_messages(
                    session.id, page=number, limit=PAGE, statuses=None, include_deleted=True
                )
            except BudgetSpent as spent:
                # No page more; the pages already paid for, in flight in other workers, are still read.
                stopped = spent
                async with turn:
                    busy -= 1
                    turn.notify_all()
                return
            except TextMagicError as exc:
                # Kept aside rather than raised: a task group would wrap it, and the model lose the explanation.
                failures.append(exc)
                group.cancel_scope.cancel()
                return
            rows = [Message.of(message) for message in page.resources]
            async with turn:
                busy -= 1
                if number == 1 and page.page_count > 1:
                    todo.append([session, 2, page.page_count])
                    left[session.id] += page.page_count - 1
                    expected += page.page_count - 1
                left[session.id] -= 1
                turn.notify_all()
            consume(session, rows if include_deleted else [m for m in rows if not m.deleted])
            await _keep(app, kept, session.id, rows, whole=left[session.id] == 0)
            read += 1
            messages += len(rows)
            await ctx.report_progress(read, expected, f"{read} of {expected} pages read")

    async with anyio.create_task_group() as group:
        # As many workers as pages may be in flight, however few sessions: one session's pages are many once
        # its first page has said how many; until then the others wait for it.
        for _ in range(CONCURRENT_PAGES if sessions else 0):
            group.start_soon(worker, group)
    if failures:
        raise failures[0]
    done = sum(1 for count in left.values() if count == 0)
    if stopped is None:
        return Reading(read, messages, done)
    return Reading(
        read,
        messages,
        done,
        complete=False,
        reason=f"stopped at this call's budget of requests to TextMagic (TEXTMAGIC_CALL_BUDGET) after {messages} "
        f"messages; {done} of {len(sessions)} sessions were read in full. Narrow the filter (since, until, text) "
        "or ask about one session for a complete answer",
    )


async def _keep(
    app: AppContext, kept: dict[int, list[Message]], session_id: int, rows: list[Message], *, whole: bool
) -> None:
    """Gather a session's messages while every one is final; once all its pages are in, store them."""
    # Nothing is gathered without a store.
    gathered = kept.get(session_id)
    if gathered is None:
        return
    if not settled(rows) and rows:
        # A message still on its way: this session is read again next time.
        del kept[session_id]
        return
    gathered += rows
    if whole:
        del kept[session_id]
        if settled(gathered) and app.store is not None:
            await app.store.put(session_id, gathered)


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
