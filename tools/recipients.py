"""get_recipients: every question about numbers, one row per number, counted from the messages in scope: what
happened to a customer's number (its history, message by message), who failed (a retry list: outcomes failed
and rejected), who got a send-out more than once (min_messages 2).

Beyond ``limit`` the result links to the whole list as CSV. The link's URI carries the query itself, so that
``resources/read`` makes the list again from TextMagic: nothing is kept in the server between the two.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Literal

from mcp_types import CallToolResult, ResourceLink
from pydantic import AfterValidator, Field

from server.state.context import ToolContext, app_context
from server.state.store import Message
from server.textmagic.models import MessageSession, parse_time
from tools.filters import SessionQuery, from_uri, uri_query, uri_template, with_filter
from tools.models import LINE_CHARS, HistoryEntry, Recipient, Recipients, cut
from tools.outcomes import REASONS_UNDOCUMENTED, STATUSES, Bucket, bucket
from tools.render import as_result
from tools.reports import ReportId, Scope, scope_of
from tools.scan import each_message_page

CSV_COLUMNS = [
    "number",
    "name",
    "country",
    "messages",
    "delivered",
    "failed",
    "rejected",
    "pending",
    "last_status",
    "last_reason",
    "last_time",
    "sessions",
    "delivered_later",
]
# A number's history is given when it holds at most this many messages.
HISTORY = 50
_NEVER = datetime.min.replace(tzinfo=UTC)
# What may stand between a number's digits: spaces, dashes, dots, slashes, brackets around the area code.
_SEPARATORS = re.compile(r"[\s\-./()]")


def phone_number(text: str) -> str:
    """``text`` as TextMagic writes a receiver: country code and number, digits only. A national form (a
    leading 0, or (0) after the country code) is refused rather than guessed."""
    raw = text.strip()
    example = "write it with its country code, as +44 7949 715839 or 0044 7949 715839"
    if "(0)" in raw.replace(" ", ""):
        raise ValueError(f"{raw!r}: the (0) is not guessed away; {example}")
    compact = _SEPARATORS.sub("", raw)
    digits = compact[1:] if compact.startswith("+") else compact[2:] if compact.startswith("00") else compact
    if compact.startswith("0") and not compact.startswith("00"):
        raise ValueError(f"{raw!r} is a national number, its country unknown; {example}")
    if not (digits.isascii() and digits.isdigit()) or not 7 <= len(digits) <= 15:
        raise ValueError(f"{raw!r} is not understood as a phone number; {example}")
    return digits


def status_code(text: str) -> str:
    if text not in STATUS_CODES:
        raise ValueError(f"{text[:20]!r} is not a status code; use any of {', '.join(STATUS_CODES)}")
    return text


# TextMagic's status codes (its published list, and g), as get_messages_by_session_id's statuses lists them.
STATUS_CODES = ("q", "s", "r", "a", "b", "d", "e", "f", "j", "u", "g", "i", "p", "h")
Outcome = Literal["delivered", "failed", "rejected", "pending"]
Numbers = Annotated[
    list[Annotated[str, AfterValidator(phone_number)]] | None,
    Field(min_length=1, max_length=50, description="With country code, any format; adds each one's history"),
]
Outcomes = Annotated[
    list[Outcome] | None,
    Field(min_length=1, max_length=4, description='Default all; a retry list: ["failed", "rejected"]'),
]
Statuses = Annotated[
    list[Annotated[str, AfterValidator(status_code)]] | None,
    Field(min_length=1, max_length=14, description="Only these status codes"),
]
MinMessages = Annotated[
    int, Field(ge=1, le=1000, description="Numbers with at least this many: 2 for repeats")
]
ExcludeDeliveredLater = Annotated[bool, Field(description="Leave out numbers delivered later (a retry list)")]


class RecipientsQuery(SessionQuery):
    """What get_recipients was asked: the session or the filter, which numbers, and which messages count."""

    id: ReportId = None
    numbers: Numbers = None
    outcomes: Outcomes = None
    statuses: Statuses = None
    min_messages: MinMessages = 1
    exclude_delivered_later: ExcludeDeliveredLater = False

    @property
    def sessions(self) -> SessionQuery:
        return SessionQuery.model_validate(self.model_dump(include=set(SessionQuery.model_fields)))

    def counts(self, message: Message) -> bool:
        """Whether ``message`` is of the outcomes and statuses asked for."""
        if self.statuses and message.status not in self.statuses:
            return False
        return not self.outcomes or bucket(message.status) in self.outcomes


CSV_TEMPLATE = uri_template("textmagic://recipients.csv", RecipientsQuery)


@dataclass
class _Number:
    buckets: dict[Bucket, int] = field(default_factory=dict)
    rank: tuple[datetime, int, int] = (_NEVER, 0, 0)
    last: Message | None = None
    delivered: datetime = _NEVER
    name: str | None = None
    country: str | None = None
    sessions: set[int] = field(default_factory=set)
    # Every message, while there are few enough to give as its history (numbers asked for only).
    history: list[tuple[tuple[datetime, int, int], HistoryEntry]] | None = None

    @property
    def messages(self) -> int:
        return sum(self.buckets.values())


@dataclass
class Tracker:
    """The messages of each number, added a page at a time."""

    query: RecipientsQuery
    numbers: dict[str, _Number] = field(default_factory=dict)

    def add(self, session: MessageSession, messages: Sequence[Message]) -> None:
        asked = self.query.numbers
        for message in messages:
            number = (message.receiver or "").lstrip("+")
            if not number or (asked and number not in asked):
                continue
            entry = self.numbers.setdefault(number, _Number(history=[] if asked else None))
            outcome = bucket(message.status)
            entry.buckets[outcome] = entry.buckets.get(outcome, 0) + 1
            moment = parse_time(message.message_time) or parse_time(session.start_time) or _NEVER
            # Of messages at the same moment, the same one is last whatever order their pages arrived in.
            rank = (moment, session.id, message.id)
            if outcome == "delivered":
                entry.delivered = max(entry.delivered, moment)
            if entry.history is not None:
                entry.history.append((rank, _entry(session, message)))
                if len(entry.history) > HISTORY:
                    entry.history = None
            if self.query.counts(message):
                entry.sessions.add(session.id)
                if rank >= entry.rank:
                    entry.rank, entry.last = rank, message
                    entry.name = (
                        " ".join(n for n in (message.first_name, message.last_name) if n) or entry.name
                    )
                    entry.country = message.country or entry.country

    def rows(self) -> list[Recipient]:
        rows = []
        for number, entry in self.numbers.items():
            last = entry.last
            if last is None or entry.messages < self.query.min_messages:
                continue
            later = entry.delivered > entry.rank[0]
            if later and self.query.exclude_delivered_later:
                continue
            history = entry.history if entry.history is not None and self.query.numbers else None
            row = Recipient(
                number=number,
                name=entry.name,
                country=entry.country,
                messages=entry.messages,
                **{name: entry.buckets.get(name, 0) for name in STATUSES},
                last_status=last.status,
                last_reason=last.reject_reason,
                last_time=last.message_time,
                sessions=sorted(entry.sessions, reverse=True),
                delivered_later=later,
                history=[item for _, item in sorted(history, key=lambda pair: pair[0])] if history else None,
            )
            rows.append((entry.messages if self.query.min_messages > 1 else 0, entry.rank, row))
        # Latest first; with min_messages, the numbers with most messages first.
        return [row for *_, row in sorted(rows, key=lambda item: (item[0], item[1]), reverse=True)]


def _entry(session: MessageSession, message: Message) -> HistoryEntry:
    return HistoryEntry(
        time=message.message_time,
        session=session.id,
        title=session.title or cut(session.text, LINE_CHARS),
        status=message.status,
        reason=message.reject_reason,
    )


@dataclass(frozen=True)
class Found:
    """The rows of a query, the scope read, and every number that had a message in it."""

    rows: list[Recipient]
    scope: Scope
    seen: frozenset[str]


async def recipients_of(ctx: ToolContext, query: RecipientsQuery) -> Found:
    scope = await scope_of(ctx, query.id, query.sessions)
    tracker = Tracker(query)
    reading = await each_message_page(ctx, scope.started, tracker.add, include_deleted=False)
    return Found(tracker.rows(), scope.after(reading), frozenset(tracker.numbers))


@with_filter
async def get_recipients(
    ctx: ToolContext,
    id: ReportId = None,
    *,
    query: SessionQuery,
    numbers: Numbers = None,
    outcomes: Outcomes = None,
    statuses: Statuses = None,
    min_messages: MinMessages = 1,
    exclude_delivered_later: ExcludeDeliveredLater = False,
    limit: Annotated[int, Field(ge=1, le=1000)] = 100,
) -> Annotated[CallToolResult, Recipients]:
    """Numbers, once each, in one session (id) or across the filter: messages by outcome, last status, reason
    and time, sessions, delivered later. For what happened to a customer's number, failed numbers to retry,
    or who got a send-out twice. Beyond limit, a CSV link holds all."""
    # The zone goes into the CSV link, so that it reads the same days whatever the server's default then.
    zone = query.timezone or app_context(ctx).settings.timezone
    asked = RecipientsQuery(
        **query.model_dump(exclude={"timezone"}),
        timezone=zone,
        id=id,
        numbers=numbers,
        outcomes=outcomes,
        statuses=statuses,
        min_messages=min_messages,
        exclude_delivered_later=exclude_delivered_later,
    )
    found = await recipients_of(ctx, asked)
    rows, scope = found.rows, found.scope
    links, uri, more = [], None, None
    if len(rows) > limit:
        uri = uri_query(CSV_TEMPLATE, asked)
        links.append(
            ResourceLink(
                type="resource_link",
                uri=uri,
                name="recipients.csv",
                mime_type="text/csv",
                description=f"All {len(rows)} numbers as CSV",
            )
        )
        more = f"{len(rows) - limit} more: raise limit (up to 1000), or read the csv resource for all"
    shown = rows[:limit]
    result = Recipients(
        recipients=shown,
        total=len(rows),
        sessions=len(scope.started),
        not_found=[number for number in asked.numbers or () if number not in found.seen],
        csv=uri,
        more=more,
        note=REASONS_UNDOCUMENTED if any(_reasons(row) for row in shown) else None,
        memory=scope.memory,
        complete=scope.complete,
        reason=scope.reason,
    )
    return as_result(result, links=links)


@from_uri(RecipientsQuery, again="get_recipients")
async def recipients_csv(ctx: ToolContext, query: RecipientsQuery) -> str:
    """Every number of the query in the URI, as CSV (one row per number)."""
    rows = (await recipients_of(ctx, query)).rows
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                _cell(row.number),
                _cell(row.name),
                _cell(row.country),
                row.messages,
                row.delivered,
                row.failed,
                row.rejected,
                row.pending,
                _cell(row.last_status),
                _cell(row.last_reason),
                _cell(row.last_time),
                ";".join(map(str, row.sessions)),
                str(row.delivered_later).lower(),
            ]
        )
    return out.getvalue()


def _reasons(row: Recipient) -> bool:
    """Whether ``row`` shows a reject reason code."""
    return bool(row.last_reason) or any(entry.reason for entry in row.history or ())


def _cell(value: str | None) -> str:
    # A spreadsheet would run a cell that starts like a formula; third-party names must stay text.
    text = value or ""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
