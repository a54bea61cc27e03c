"""get_delivery_report: what happened to one session, or to every session a filter matches, counted from the
messages themselves.

The messages of every session in scope are read concurrently under the shared pacer, page by page, and tallied
as they arrive: the counts agree exactly with the messages, memory stays flat, and nothing is kept once the
call returns.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated

from mcp.server.apps import client_supports_apps
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field

from server.state.context import ToolContext, app_context
from server.state.store import Message
from server.textmagic import current_budget
from server.textmagic.models import MessageSession, parse_time
from tools.filters import NARROWING_NAMES, SessionFilter, SessionQuery, with_filter
from tools.models import (
    Apart,
    DeliveryReport,
    FailedMessage,
    GroupBy,
    GroupRow,
    IdValue,
    IncludeDeleted,
    Remembered,
    SessionLine,
)
from tools.outcomes import FAILED_OR_REJECTED, REASONS_UNDOCUMENTED, Counter, not_started
from tools.render import as_result
from tools.scan import PAGE, Reading, each_message_page, scan_sessions
from tools.view import VIEW_FAILED, VIEW_GROUPS, view_meta

# Messages one report reads at most (newest sessions first): a thousand pages, twenty seconds at the rate limit.
MAX_MESSAGES = 100_000
GROUP_ROWS = 50
# A report by filter over at most this many sessions lists them.
LISTED = 10
_NEVER = datetime.min.replace(tzinfo=UTC)

ReportId = Annotated[IdValue | None, Field(description="One session; without it, the filter")]


@dataclass(frozen=True)
class Scope:
    """The sessions a report covers, and how they were chosen."""

    sessions: list[MessageSession]
    flt: SessionFilter
    by_id: bool
    complete: bool = True
    reason: str | None = None
    memory: Remembered | None = None

    @property
    def started(self) -> list[MessageSession]:
        """The sessions whose messages have outcomes: those that started."""
        return [session for session in self.sessions if not not_started(session)]

    @property
    def scheduled(self) -> list[MessageSession]:
        return [session for session in self.sessions if not_started(session)]

    def after(self, reading: Reading) -> Scope:
        """The scope as far as reading its messages got, and what of it came from the store."""
        memory = (
            Remembered(
                sessions=reading.stored,
                read_at=datetime.fromtimestamp(reading.stored_since, UTC).isoformat(timespec="seconds"),
            )
            if reading.stored and reading.stored_since is not None
            else None
        )
        if reading.complete:
            return replace(self, memory=memory)
        reason = "; ".join(filter(None, (self.reason, reading.reason)))
        return replace(self, complete=False, reason=reason, memory=memory)


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
    # Sessions the store answers for cost no request, and count not towards the messages read.
    stored = (
        await app.store.kept(s.id for s in scan.sessions)
        if app.store is not None and not app.settings.cache_fresh
        else set()
    )
    kept: list[MessageSession] = []
    messages = requests = 0
    for session in scan.sessions:
        if session.id in stored:
            kept.append(session)
            continue
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


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
Keyer = Callable[[MessageSession, Message], "str | None"]
# What each single key reads of a session or a message.
_PLAIN: dict[str, Keyer] = {
    "session": lambda session, _: str(session.id),
    "source": lambda session, _: session.source,
    "destination": lambda session, _: session.destination,
    "country": lambda _, message: message.country,
    "status": lambda _, message: message.status,
    "reject_reason": lambda _, message: message.reject_reason,
    "sender": lambda _, message: message.sender,
}


@dataclass
class Tally:
    """Outcome counts, cost, groups and failures of messages, added a page at a time. Deleted messages count in
    cost (TextMagic charged them) and, unless ``include_deleted``, nowhere else but ``deleted``. Failures are
    kept as they came; the report makes the few it lists."""

    flt: SessionFilter
    group_by: list[str]
    include_deleted: bool
    total: Counter = field(default_factory=Counter)
    deleted: Counter = field(default_factory=Counter)
    groups: dict[str, dict[str | None, Counter]] = field(default_factory=dict)
    failures: list[tuple[int, Message]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._keyers = [(self.groups.setdefault(name, {}), self._keyer(name)) for name in self.group_by]

    def add(self, session: MessageSession, messages: Sequence[Message]) -> None:
        keyers, include_deleted, total = self._keyers, self.include_deleted, self.total
        for message in messages:
            counted = include_deleted or not message.deleted
            status, price = message.status, message.price
            if not counted:
                self.deleted.add(status, price)
            total.add(status, price, counted=counted)
            for counters, keyer in keyers:
                key = keyer(session, message)
                counter = counters.get(key)
                if counter is None:
                    counter = counters[key] = Counter()
                counter.add(status, price, counted=counted)
            if counted and status in FAILED_OR_REJECTED:
                self.failures.append((session.id, message))

    def _keyer(self, name: str) -> Keyer:
        if "+" in name:
            # One table by the pair: each message in the row of both its values.
            first, second = (self._keyer(part) for part in name.split("+"))
            return lambda session, message: (
                f"{first(session, message) or '-'} / {second(session, message) or '-'}"
            )
        if name in ("day", "hour", "weekday"):
            return functools.partial(self._moment, name)
        return _PLAIN[name]

    def _moment(self, name: str, session: MessageSession, message: Message) -> str | None:
        moment = parse_time(message.message_time) or parse_time(session.start_time)
        local = self.flt.local(moment) if moment else None
        if local is None:
            return None
        if name == "day":
            return local.date().isoformat()
        return f"{local.hour:02d}" if name == "hour" else WEEKDAYS[local.weekday()]

    def rows(self, name: str) -> list[GroupRow]:
        """The rows of one group: by day, hour or weekday in their order, else the largest first."""
        rows = [GroupRow.of(counter, key) for key, counter in self.groups.get(name, {}).items()]
        if name == "weekday":
            return sorted(rows, key=lambda r: WEEKDAYS.index(r.key) if r.key in WEEKDAYS else len(WEEKDAYS))
        if name in ("day", "hour"):
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
        Field(
            max_length=6,
            description="Counts, rate and cost per key: country, status, reject_reason, sender, source, "
            "destination, session, day, hour, weekday; two joined by + (sender+country) make one table",
        ),
    ] = None,
    failed_limit: Annotated[int, Field(ge=0, le=500, description="Failed messages to list")] = 20,
    include_deleted: IncludeDeleted = False,
) -> Annotated[CallToolResult, DeliveryReport]:
    """How one session (id), or every session the filter matches, went: outcome counts, delivery rate, cost as
    billed and failed recipients, counted from the messages; sessions not started yet apart. group_by
    ["country"] gives rates by country, ["day"] a trend."""
    asked = list(dict.fromkeys(group_by or []))
    if not client_supports_apps(ctx):
        return as_result(await delivery_report(ctx, id, query, asked, failed_limit, include_deleted))
    # The host shows the report as a picture too: its country and reason breakdowns and a longer failure
    # list come from the same messages, so they cost no more requests, and go to the view alone.
    # Several sessions get a row each.
    each_session = [] if id else ["session"]
    viewed = list(dict.fromkeys([*asked, *VIEW_GROUPS, *each_session]))
    scope, tally = await tally_messages(ctx, id, query, viewed, include_deleted)
    result = as_result(report_of(scope, tally, asked, failed_limit))
    result.meta = view_meta(report_of(scope, tally, viewed, VIEW_FAILED))
    return result


async def delivery_report(
    ctx: ToolContext,
    id: int | None,
    query: SessionQuery,
    group_by: list[str],
    failed_limit: int,
    include_deleted: bool,
) -> DeliveryReport:
    scope, tally = await tally_messages(ctx, id, query, group_by, include_deleted)
    return report_of(scope, tally, group_by, failed_limit)


async def tally_messages(
    ctx: ToolContext, id: int | None, query: SessionQuery, group_by: list[str], include_deleted: bool
) -> tuple[Scope, Tally]:
    """Every message of the sessions in scope that started, read and tallied (as far as the call's budget
    allows). Deleted messages are read too: TextMagic charged them."""
    scope = await scope_of(ctx, id, query)
    tally = Tally(scope.flt, list(dict.fromkeys(group_by)), include_deleted)
    reading = await each_message_page(ctx, scope.started, tally.add, include_deleted=True)
    return scope.after(reading), tally


def report_of(scope: Scope, tally: Tally, group_by: list[str], failed_limit: int) -> DeliveryReport:
    """The report of a tally, with the groups in ``group_by`` (tallied) and the newest ``failed_limit`` failures."""
    # Newest first; messages of the same moment in a fixed order, whatever order their pages arrived in.
    failures = sorted(
        tally.failures,
        key=lambda f: (parse_time(f[1].message_time) or _NEVER, f[0], f[1].receiver or "", f[1].status or ""),
        reverse=True,
    )
    sessions = {str(session.id): session for session in scope.sessions}
    groups = {
        name: [
            row.about(sessions[row.key]) if name == "session" and row.key in sessions else row for row in rows
        ]
        for name, rows in ((name, tally.rows(name)) for name in group_by)
    }
    cut = [name for name, rows in groups.items() if len(rows) > GROUP_ROWS]
    more = []
    if 0 < failed_limit < len(failures):
        more.append(
            f"{plural(len(failures) - failed_limit, 'more failed message')}: call get_recipients with the same "
            'arguments and outcomes ["failed", "rejected"] for every failed number once, or raise failed_limit '
            "(up to 500)"
        )
    if cut:
        more.append(f"groups cut to the {GROUP_ROWS} largest rows: {', '.join(cut)}")
    listed = [_failed(session_id, message) for session_id, message in failures[:failed_limit]]
    reasons = any(f.reason for f in listed) or any(
        "reject_reason" in name.split("+") and any(row.key for row in rows) for name, rows in groups.items()
    )
    scheduled = scope.scheduled
    return DeliveryReport(
        sessions=len(scope.started),
        listed=[SessionLine.of(s) for s in scope.sessions] if len(scope.sessions) <= LISTED else [],
        filter=None if scope.by_id else scope.flt.describe(),
        messages=tally.total.total,
        outcome=GroupRow.of(tally.total),
        scheduled=Apart(
            sessions=len(scheduled),
            recipients=sum(s.numbers_count or 0 for s in scheduled),
            cost=round(sum(s.price or 0.0 for s in scheduled), 4),
        )
        if scheduled
        else None,
        deleted=Apart(messages=tally.deleted.total, cost=round(tally.deleted.cost, 4))
        if tally.deleted.total
        else None,
        groups={name: rows[:GROUP_ROWS] for name, rows in groups.items()},
        failed_count=len(failures),
        failed=listed,
        more="; ".join(more) or None,
        note=REASONS_UNDOCUMENTED if reasons else None,
        memory=scope.memory,
        complete=scope.complete,
        reason=scope.reason,
    )


def _failed(session_id: int, message: Message) -> FailedMessage:
    return FailedMessage(
        number=message.receiver,
        name=" ".join(n for n in (message.first_name, message.last_name) if n) or None,
        country=message.country,
        status=message.status,
        reason=message.reject_reason,
        session=session_id,
        time=message.message_time,
    )


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, made plural unless one: "1 more failed message", "2 more failed messages"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
