"""find_message_sessions: the sessions a filter matches, sorted, with their outcomes when asked for."""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from mcp_types import CallToolResult
from pydantic import Field

from server.state.context import ToolContext, app_context
from server.textmagic import current_budget
from server.textmagic.models import MessageSession, parse_time
from tools.filters import SessionFilter, SessionQuery, with_filter
from tools.models import FoundSessions, SessionBrief
from tools.outcomes import Counts, not_started
from tools.render import as_result
from tools.scan import gather, scan_sessions

# Sessions whose statistics one call ranks: each costs a request, at most 50 a second.
MAX_RANKED = 500

Sort = Literal["newest", "oldest", "worst_delivery", "highest_price"]


@with_filter
async def find_message_sessions(
    ctx: ToolContext,
    *,
    query: SessionQuery,
    with_stats: Annotated[bool, Field(description="Add outcome counts and delivery rate")] = False,
    sort: Annotated[Sort, Field(description="worst_delivery: lowest rate first, with stats")] = "newest",
    limit: Annotated[int, Field(ge=1, le=100)] = 20,
) -> Annotated[CallToolResult, FoundSessions]:
    """Find sessions by date, text, source and destination in one call, newest first unless sorted otherwise;
    with how many matched in all, their recipients and price.

    Dates are read in timezone: "yesterday" is since=until=that date.
    """
    app = app_context(ctx)
    flt = SessionFilter.of(query, app.settings.timezone)
    scan = await scan_sessions(ctx, flt)
    matched = _sorted(scan.sessions, sort)
    complete, reason = scan.complete, scan.reason
    counts: dict[int, Counts] = {}
    # Each session's statistics cost a request: as many as the call's budget has left, at most.
    budget = current_budget()
    room = budget.left if budget is not None else MAX_RANKED
    if sort == "worst_delivery":
        ranked = matched[: min(MAX_RANKED, room)]
        if len(matched) > len(ranked):
            complete = False
            bound = (
                "the call's budget, TEXTMAGIC_CALL_BUDGET" if room < MAX_RANKED else f"at most {MAX_RANKED}"
            )
            reason = f"ranked only the newest {len(ranked)} of {len(matched)} matched sessions ({bound}); narrow the filter"
        counts = await session_counts(ctx, ranked)
        matched = sorted(ranked, key=lambda s: _worst_first(counts[s.id]))
    elif with_stats:
        counts = await session_counts(ctx, matched[: min(limit, room)])
    shown = matched[:limit]
    return as_result(
        FoundSessions(
            sessions=[SessionBrief.of(s, counts.get(s.id)) for s in shown],
            matched=len(scan.sessions),
            recipients=sum(s.numbers_count or 0 for s in scan.sessions),
            price=round(sum(s.price or 0.0 for s in scan.sessions if not not_started(s)), 4),
            scheduled=sum(1 for s in scan.sessions if not_started(s)),
            scanned=scan.scanned,
            complete=complete,
            reason=reason,
            more=f"{len(matched) - len(shown)} more: raise limit (up to 100) or narrow the filter"
            if len(matched) > len(shown)
            else None,
        )
    )


async def session_counts(ctx: ToolContext, sessions: list[MessageSession]) -> dict[int, Counts]:
    """Each session's outcome counts, from TextMagic's statistics (one request each, concurrently)."""
    client = app_context(ctx).textmagic
    stats = await gather(
        [
            functools.partial(client.get_session_stat, session.id, include_deleted=False)
            for session in sessions
        ]
    )
    return {session.id: Counts.of_stat(stat) for session, stat in zip(sessions, stats, strict=True)}


def _sorted(sessions: list[MessageSession], sort: Sort) -> list[MessageSession]:
    if sort == "highest_price":
        return sorted(sessions, key=lambda s: -(s.price or 0.0))
    # By start time, then id (TextMagic lists by id): a session scheduled ahead sorts by when it goes out.
    by_time = sorted(
        sessions, key=lambda s: (parse_time(s.start_time) is not None, parse_time(s.start_time), s.id)
    )
    return by_time if sort == "oldest" else by_time[::-1]


def _worst_first(counts: Counts) -> tuple[bool, float, int]:
    # Sessions with nothing final yet go last; among equal rates, more failures first.
    rate = counts.delivery_rate
    return (rate is None, rate if rate is not None else 0.0, -(counts.failed + counts.rejected))
