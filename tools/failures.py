"""get_failed_recipients: the numbers whose messages failed or were rejected, one row per number, for retry lists.

Beyond ``limit`` the result links to the whole list as CSV. The link's URI carries the query itself, so that
``resources/read`` makes the list again from TextMagic: nothing is kept in the server between the two.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from mcp_types import CallToolResult, ResourceLink
from pydantic import Field

from server.state.context import ToolContext, app_context
from server.textmagic.models import MessageOut, MessageSession, parse_time
from tools.filters import SessionQuery, from_uri, uri_query, uri_template, with_filter
from tools.models import FailedRecipient, FailedRecipients
from tools.outcomes import FAILED_OR_REJECTED
from tools.render import as_result
from tools.reports import ReportId, Scope, scope_of
from tools.scan import each_message_page

CSV_COLUMNS = [
    "number",
    "name",
    "country",
    "failures",
    "last_status",
    "last_reason",
    "last_time",
    "sessions",
    "delivered_later",
]
_NEVER = datetime.min.replace(tzinfo=UTC)

FailedStatus = Literal["e", "f", "u", "j", "g"]
FailedStatuses = Annotated[
    list[FailedStatus] | None,
    Field(min_length=1, max_length=5, description="Only these codes; default every failed and rejected one"),
]
ExcludeDeliveredLater = Annotated[bool, Field(description="Leave out numbers delivered later (a retry list)")]


class FailuresQuery(SessionQuery):
    """What get_failed_recipients was asked: the session or the filter, and which failures count."""

    id: ReportId = None
    statuses: FailedStatuses = None
    exclude_delivered_later: ExcludeDeliveredLater = False

    @property
    def sessions(self) -> SessionQuery:
        return SessionQuery.model_validate(self.model_dump(include=set(SessionQuery.model_fields)))


CSV_TEMPLATE = uri_template("textmagic://failed-recipients.csv", FailuresQuery)


@dataclass
class _Number:
    failures: int = 0
    rank: tuple[datetime, int, int] = (_NEVER, 0, 0)
    last: datetime = _NEVER
    last_time: str | None = None
    last_status: str | None = None
    last_reason: str | None = None
    name: str | None = None
    country: str | None = None
    sessions: set[int] = field(default_factory=set)


@dataclass
class Failures:
    """Failed messages by number, and when each number was last delivered, added a page at a time."""

    wanted: frozenset[str]
    numbers: dict[str, _Number] = field(default_factory=dict)
    delivered: dict[str, datetime] = field(default_factory=dict)

    def add(self, session: MessageSession, messages: list[MessageOut]) -> None:
        for message in messages:
            number = message.receiver
            if not number:
                continue
            moment = parse_time(message.message_time) or parse_time(session.start_time) or _NEVER
            if message.status == "d":
                self.delivered[number] = max(moment, self.delivered.get(number, _NEVER))
            elif message.status in self.wanted:
                entry = self.numbers.setdefault(number, _Number())
                entry.failures += 1
                entry.sessions.add(session.id)
                # The latest failure is the last; of failures at the same moment, the same one whatever order
                # their pages arrived in.
                rank = (moment, session.id, message.id)
                if rank >= entry.rank:
                    entry.rank = rank
                    entry.last, entry.last_time = moment, message.message_time
                    entry.last_status, entry.last_reason = message.status, message.reject_reason
                    entry.name = (
                        " ".join(n for n in (message.first_name, message.last_name) if n) or entry.name
                    )
                    entry.country = message.country or entry.country

    def recipients(self, *, exclude_delivered_later: bool) -> list[FailedRecipient]:
        rows = []
        for number, entry in self.numbers.items():
            later = self.delivered.get(number, _NEVER) > entry.last
            if later and exclude_delivered_later:
                continue
            rows.append(
                (
                    entry.last,
                    FailedRecipient(
                        number=number,
                        name=entry.name,
                        country=entry.country,
                        failures=entry.failures,
                        last_status=entry.last_status,
                        last_reason=entry.last_reason,
                        last_time=entry.last_time,
                        sessions=sorted(entry.sessions, reverse=True),
                        delivered_later=later,
                    ),
                )
            )
        return [row for _, row in sorted(rows, key=lambda pair: (pair[0], pair[1].number), reverse=True)]


async def failed_recipients(ctx: ToolContext, query: FailuresQuery) -> tuple[list[FailedRecipient], Scope]:
    scope = await scope_of(ctx, query.id, query.sessions)
    failures = Failures(frozenset(query.statuses or FAILED_OR_REJECTED))
    reading = await each_message_page(ctx, scope.sessions, failures.add, include_deleted=False)
    return failures.recipients(exclude_delivered_later=query.exclude_delivered_later), scope.after(reading)


@with_filter
async def get_failed_recipients(
    ctx: ToolContext,
    id: ReportId = None,
    *,
    query: SessionQuery,
    statuses: FailedStatuses = None,
    exclude_delivered_later: ExcludeDeliveredLater = False,
    limit: Annotated[int, Field(ge=1, le=1000)] = 100,
) -> Annotated[CallToolResult, FailedRecipients]:
    """Numbers whose messages failed or were rejected, in one session (id) or across the filter, once each:
    failures, last status and reason, sessions, and whether it was delivered later. Beyond limit, a CSV link
    holds the whole list."""
    # The zone goes into the CSV link, so that it reads the same days whatever the server's default then.
    zone = query.timezone or app_context(ctx).settings.timezone
    asked = FailuresQuery(
        **query.model_dump(exclude={"timezone"}),
        timezone=zone,
        id=id,
        statuses=statuses,
        exclude_delivered_later=exclude_delivered_later,
    )
    recipients, scope = await failed_recipients(ctx, asked)
    links, uri, more = [], None, None
    if len(recipients) > limit:
        uri = uri_query(CSV_TEMPLATE, asked)
        links.append(
            ResourceLink(
                type="resource_link",
                uri=uri,
                name="failed-recipients.csv",
                mime_type="text/csv",
                description=f"All {len(recipients)} failed recipients as CSV",
            )
        )
        more = f"{len(recipients) - limit} more: raise limit (up to 1000), or read the csv resource for all"
    result = FailedRecipients(
        recipients=recipients[:limit],
        total=len(recipients),
        sessions=len(scope.sessions),
        csv=uri,
        more=more,
        complete=scope.complete,
        reason=scope.reason,
    )
    return as_result(result, links=links)


@from_uri(FailuresQuery, again="get_failed_recipients")
async def failed_recipients_csv(ctx: ToolContext, query: FailuresQuery) -> str:
    """Every failed or rejected recipient of the query in the URI, as CSV (one row per number)."""
    recipients, _ = await failed_recipients(ctx, query)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in recipients:
        writer.writerow(
            [
                _cell(row.number),
                _cell(row.name),
                _cell(row.country),
                row.failures,
                _cell(row.last_status),
                _cell(row.last_reason),
                _cell(row.last_time),
                ";".join(map(str, row.sessions)),
                str(row.delivered_later).lower(),
            ]
        )
    return out.getvalue()


def _cell(value: str | None) -> str:
    # A spreadsheet would run a cell that starts like a formula; third-party names must stay text.
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
