"""get_delivery_report: what happened to one session, or to every session a filter matches, counted from the
messages themselves.

The messages of every session in scope are read concurrently under the shared pacer, page by page, and tallied
as they arrive: the counts agree exactly with the messages, memory stays flat, and nothing is kept once the
call returns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated

from mcp.server.apps import client_supports_apps
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field

from server.state.context import ToolContext, app_context
from server.textmagic import current_budget
from server.textmagic.models import MessageOut, MessageSession, parse_time
from tools.filters import NARROWING_NAMES, SessionFilter, SessionQuery, with_filter
from tools.models import (
    MAX_ID,
    DeliveryReport,
    FailedMessage,
    GroupBy,
    GroupRow,
    IncludeDeleted,
    SessionPreview,
)
from tools.outcomes import Counter, bucket
from tools.render import as_result
from tools.scan import PAGE, Reading, each_message_page, scan_sessions
from tools.view import VIEW_FAILED, VIEW_GROUPS, view_meta

# Messages one report reads at most (newest sessions first): a thousand pages, twenty seconds at the rate limit.
MAX_MESSAGES = 100_000
GROUP_ROWS = 50
_NEVER = datetime.min.replace(tzinfo=UTC)

ReportId = Annotated[
    int | None,
    Field(ge=1, le=MAX_ID, description="One session; without it, the filter"),
]


@dataclass(frozen=True)
class Scope:
    """The sessions a report covers, and how they were chosen."""

    sessions: list[MessageSession]
    flt: SessionFilter
    by_id: bool
    complete: bool = True
    reason: str | None = None

    def after(self, reading: Reading) -> Scope:
        """The scope as far as reading its messages got."""
        if reading.complete:
            return self
        return replace(self, complete=False, reason="; ".join(filter(None, (self.reason, reading.reason))))


async def scope_of(ctx: ToolContext, id: int | None, query: SessionQuery) -> Scope:
    """The sessions to read: one by id, or the newest the filter matches that fit in the call's bounds (its
    budget of requests to TextMagic, and MAX_MESSAGES), saying so when that is not all of them."""
    app = app_context(ctx)
    flt = SessionFilter.of(query, app.settings.timezone)
    if id is not None:
        if query.narrows:
            raise ToolError(
                f"Invalid arguments: pass either id (one session) or filter arguments ({NARROWING_NAMES}), not both."
            )
        return Scope([await app.textmagic.get_session(id)], flt, by_id=True)
    scan = await scan_sessions(ctx, flt)
    budget = current_budget()
    requests_left = budget.left if budget is not None else None
    kept: list[MessageSession] = []
    messages = requests = 0
    for session in scan.sessions:
        messages += session.numbers_count or 0
        # Each session costs its pages of messages, one at least.
        requests += max(1, math.ceil((session.numbers_count or 0) / PAGE))
        over_budget = requests_left is not None and requests > requests_left
        if kept and (messages > MAX_MESSAGES or over_budget):
            bound = (
                f"the call's budget of {budget.limit} requests to TextMagic, TEXTMAGIC_CALL_BUDGET"
                if over_budget and budget is not None
                else f"at most {MAX_MESSAGES} messages a call"
            )
            reached = kept[-1].start_time or "an unknown time"
            reason = (
                f"covers the newest {len(kept)} of {len(scan.sessions)} matched sessions, back to {reached} "
                f"({bound}); narrow the filter (since, until) for the rest"
            )
            return Scope(kept, flt, by_id=False, complete=False, reason=reason)
        kept.append(session)
    return Scope(kept, flt, by_id=False, complete=scan.complete, reason=scan.reason)


@dataclass
class Tally:
    """Outcome counts, cost, groups and failures of messages, added a page at a time."""

    flt: SessionFilter
    group_by: list[GroupBy]
    total: Counter = field(default_factory=Counter)
    groups: dict[str, dict[str | None, Counter]] = field(default_factory=dict)
    failures: list[FailedMessage] = field(default_factory=list)

    def add(self, session: MessageSession, messages: list[MessageOut]) -> None:
        for message in messages:
            self.total.add(message.status, message.price)
            for name in self.group_by:
                key = self._key(name, session, message)
                self.groups.setdefault(name, {}).setdefault(key, Counter()).add(message.status, message.price)
            if bucket(message.status) in ("failed", "rejected"):
                self.failures.append(
                    FailedMessage(
                        number=message.receiver,
                        name=" ".join(n for n in (message.first_name, message.last_name) if n) or None,
                        country=message.country,
                        status=message.status,
                        reason=message.reject_reason,
                        session=session.id,
                        time=message.message_time,
                    )
                )

    def _key(self, name: GroupBy, session: MessageSession, message: MessageOut) -> str | None:
        if name == "day":
            moment = parse_time(message.message_time) or parse_time(session.start_time)
            return self.flt.day(moment) if moment else None
        if name == "session":
            return str(session.id)
        value: str | None = {
            "country": message.country,
            "status": message.status,
            "reject_reason": message.reject_reason,
            "sender": message.sender,
        }[name]
        return value

    def rows(self, name: GroupBy) -> list[GroupRow]:
        """The rows of one group: by day in order of days, else the largest first."""
        rows = [GroupRow.of(counter, key) for key, counter in self.groups.get(name, {}).items()]
        if name == "day":
            return sorted(rows, key=lambda r: r.key or "")
        return sorted(rows, key=lambda r: (-r.total, r.key or ""))


@with_filter
async def get_delivery_report(
    ctx: ToolContext,
    id: ReportId = None,
    *,
    query: SessionQuery,
    group_by: Annotated[
        list[GroupBy] | None,
        Field(max_length=6, description="Counts and rate per key"),
    ] = None,
    failed_limit: Annotated[int, Field(ge=0, le=500, description="Failed messages to list")] = 20,
    include_deleted: IncludeDeleted = False,
) -> Annotated[CallToolResult, DeliveryReport]:
    """How one session (id), or every session the filter matches, went: outcome counts, delivery rate, cost and
    failed recipients, counted from the messages. group_by ["country"] gives rates by country, ["day"] a
    trend."""
    asked = list(dict.fromkeys(group_by or []))
    if not client_supports_apps(ctx):
        return as_result(await delivery_report(ctx, id, query, asked, failed_limit, include_deleted))
    # The host shows the report as a picture too: its country and reason breakdowns and a longer failure
    # list come from the same messages, so they cost no more requests, and go to the view alone.
    # Several sessions get a row each.
    each_session: list[GroupBy] = [] if id else ["session"]
    viewed = list(dict.fromkeys([*asked, *VIEW_GROUPS, *each_session]))
    scope, tally = await tally_messages(ctx, id, query, viewed, include_deleted)
    result = as_result(report_of(scope, tally, asked, failed_limit))
    result.meta = view_meta(report_of(scope, tally, viewed, VIEW_FAILED))
    return result


async def delivery_report(
    ctx: ToolContext,
    id: int | None,
    query: SessionQuery,
    group_by: list[GroupBy],
    failed_limit: int,
    include_deleted: bool,
) -> DeliveryReport:
    scope, tally = await tally_messages(ctx, id, query, group_by, include_deleted)
    return report_of(scope, tally, group_by, failed_limit)


async def tally_messages(
    ctx: ToolContext, id: int | None, query: SessionQuery, group_by: list[GroupBy], include_deleted: bool
) -> tuple[Scope, Tally]:
    """Every message of the sessions in scope, read and tallied (as far as the call's budget allows)."""
    scope = await scope_of(ctx, id, query)
    tally = Tally(scope.flt, list(dict.fromkeys(group_by)))
    reading = await each_message_page(ctx, scope.sessions, tally.add, include_deleted=include_deleted)
    return scope.after(reading), tally


def report_of(scope: Scope, tally: Tally, group_by: list[GroupBy], failed_limit: int) -> DeliveryReport:
    """The report of a tally, with the groups in ``group_by`` (tallied) and the newest ``failed_limit`` failures."""
    # Newest first; messages of the same moment in a fixed order, whatever order their pages arrived in.
    failures = sorted(
        tally.failures,
        key=lambda f: (parse_time(f.time) or _NEVER, f.session or 0, f.number or "", f.status or ""),
        reverse=True,
    )
    groups = {name: tally.rows(name) for name in group_by}
    cut = [name for name, rows in groups.items() if len(rows) > GROUP_ROWS]
    more = []
    if len(failures) > failed_limit:
        more.append(
            f"{len(failures) - failed_limit} more failed messages: call get_failed_recipients with the same "
            "arguments for every failed number (deduplicated), or raise failed_limit (up to 500)"
        )
    if cut:
        more.append(f"groups cut to the {GROUP_ROWS} largest rows: {', '.join(cut)}")
    return DeliveryReport(
        session=SessionPreview.of(scope.sessions[0]) if scope.by_id else None,
        sessions=len(scope.sessions),
        filter=None if scope.by_id else scope.flt.describe(),
        messages=tally.total.total,
        outcome=GroupRow.of(tally.total),
        groups={name: rows[:GROUP_ROWS] for name, rows in groups.items()},
        failed_count=len(failures),
        failed=failures[:failed_limit],
        more="; ".join(more) or None,
        complete=scope.complete,
        reason=scope.reason,
    )
