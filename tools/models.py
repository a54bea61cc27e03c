"""The tools' argument types and result models: with TextMagic's own models (``server.textmagic.models``), the
single source of every JSON Schema the server publishes. A result never carries null (``tools.render`` leaves
nulls out), so an optional field is simply absent when it has nothing to say.

TextMagic's fields keep TextMagic's camelCase names; the server's own are snake_case. Descriptions say what a
name does not: every one is read with every tool listing.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from server.textmagic.models import MessageSession
from tools.outcomes import Counter, Counts, not_started

# A session's text in a result is cut to this many characters: enough to recognise it; in a line, shorter.
TEXT_CHARS = 80
LINE_CHARS = 40
# Beyond 2**53 - 1 many JSON clients lose integer precision, so no real id can be larger.
MAX_ID = 2**53 - 1
MAX_BULK_IDS = 100


def _exact(value: int) -> int:
    if value > MAX_ID:
        raise ValueError(f"no id is larger than {MAX_ID} (2**53 - 1, the largest JSON clients hold exactly)")
    return value


# A positive id that JSON clients can hold exactly; the upper bound checked, not listed: no model writes one.
IdValue = Annotated[int, Field(ge=1), AfterValidator(_exact)]
SessionId = Annotated[IdValue, Field(description="Session id")]
Page = Annotated[int, Field(ge=1, le=1_000_000)]
Limit = Annotated[int, Field(ge=1, le=100)]
IncludeDeleted = Annotated[
    bool,
    Field(description="Also deleted messages"),
]
# What a report can group by: one key, or two joined by "+" for one table keyed by the pair.
GROUP_KEYS = (
    "country",
    "status",
    "reject_reason",
    "sender",
    "source",
    "destination",
    "session",
    "day",
    "hour",
    "weekday",
)


def _group_key(value: str) -> str:
    keys = value.split("+")
    if len(keys) > 2 or any(key not in GROUP_KEYS for key in keys) or len(set(keys)) != len(keys):
        raise ValueError(
            f"{value!r} is not a group: use one of {', '.join(GROUP_KEYS)}, or two of them joined by + "
            "(sender+country)"
        )
    return value


GroupBy = Annotated[str, Field(max_length=40), AfterValidator(_group_key)]


class SessionLine(BaseModel):
    """A session in a line: when, what (its title, or the start of its text), to how many."""

    id: int
    start_time: str | None = None
    title: str | None = None
    recipients: int | None = None

    @classmethod
    def of(cls, session: MessageSession) -> SessionLine:
        return cls(
            id=session.id,
            start_time=session.start_time,
            title=session.title or cut(session.text, LINE_CHARS),
            recipients=session.numbers_count,
        )


class DeletePreview(BaseModel):
    """What a confirmed call would delete: every session asked for by id (a filter's first 20), the ids to
    confirm with, and their count, recipients and price (not refunded)."""

    sessions: list[SessionLine]
    ids: list[int] = Field(default_factory=list)
    count: int
    recipients: int
    price: float
    filter: str | None = None


class DeleteResult(BaseModel):
    """A preview with a confirmation token, or what was deleted."""

    deleted: bool = Field(description="Only true when this call deleted")
    message: str
    preview: DeletePreview | None = None
    confirmation_token: str | None = None
    expires_at: str | None = None
    deleted_count: int = 0
    deleted_ids: list[int] = Field(default_factory=list)
    deleted_all: bool = False
    not_found_ids: list[int] = Field(default_factory=list, description="Gone before the delete ran")
    uncertain_ids: list[int] = Field(default_factory=list, description="Outcome unknown: look them up")


class SessionBrief(BaseModel):
    """A session, briefly; with its outcome counts when asked for."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True)

    id: int
    start_time: str | None = None
    title: str | None = None
    text: str | None = None
    source: str | None = None
    destination: str | None = None
    reference_id: str | None = None
    numbers_count: int | None = None
    price: float | None = None
    delivered: int | None = None
    failed: int | None = None
    rejected: int | None = None
    pending: int | None = None
    other: int | None = None
    delivery_rate: float | None = Field(None, alias="delivery_rate")
    scheduled: bool | None = Field(None, description="Not started yet")

    @classmethod
    def of(cls, session: MessageSession, counts: Counts | None = None) -> SessionBrief:
        outcome = counts.model_dump() if counts is not None else {}
        return cls(
            scheduled=not_started(session) or None,
            id=session.id,
            start_time=session.start_time,
            title=session.title,
            text=cut(session.text),
            source=session.source,
            destination=session.destination,
            reference_id=session.reference_id,
            numbers_count=session.numbers_count,
            price=session.price,
            **outcome,
        )


class FoundSessions(BaseModel):
    """The sessions a filter matched."""

    sessions: list[SessionBrief]
    matched: int = Field(description="In all")
    recipients: int
    price: float = Field(description="Of those started")
    scheduled: int = Field(0, description="Matched but not started yet")
    scanned: int
    complete: bool
    reason: str | None = None
    more: str | None = None


class FailedMessage(BaseModel):
    """A failed or rejected message."""

    number: str | None = None
    name: str | None = None
    country: str | None = None
    status: str | None = None
    reason: str | None = Field(None, description="Reject reason code")
    session: int | None = None
    time: str | None = None


class _Keyed(BaseModel):
    key: str | None = None


class GroupRow(Counts, _Keyed):
    """Outcome counts and cost of messages: all of a report's, or those that share ``key`` in one of its groups
    (listed first: pydantic orders base fields last to first). A session's row also says which session."""

    cost: float = Field(0.0, description="Billed, deleted messages included")
    start_time: str | None = None
    title: str | None = None
    recipients: int | None = None

    @classmethod
    def of(cls, counter: Counter, key: str | None = None) -> GroupRow:
        return cls(key=key, cost=round(counter.cost, 4), **counter.buckets)

    def about(self, session: MessageSession) -> GroupRow:
        line = SessionLine.of(session)
        return self.model_copy(
            update={"start_time": line.start_time, "title": line.title, "recipients": line.recipients}
        )


class Remembered(BaseModel):
    """Sessions answered from the store of settled sessions, and when the oldest of them was read."""

    sessions: int
    read_at: str


class Apart(BaseModel):
    """Sessions or messages a report keeps out of its outcome counts, and what they cost."""

    sessions: int | None = None
    messages: int | None = None
    recipients: int | None = None
    cost: float


class DeliveryReport(BaseModel):
    """What happened to one session, or to every session a filter matched: ``listed`` names the sessions when
    they are 10 or fewer, ``memory`` says how many were answered from the store of settled sessions."""

    sessions: int = Field(description="Started")
    listed: list[SessionLine] = Field(default_factory=list)
    filter: str | None = None
    messages: int
    outcome: GroupRow
    scheduled: Apart | None = Field(None, description="Not started yet: in no count or cost")
    deleted: Apart | None = Field(None, description="Deleted messages: in cost, not in the counts")
    groups: dict[str, list[GroupRow]] = Field(default_factory=dict)
    failed_count: int
    failed: list[FailedMessage] = Field(
        default_factory=list, description="The first failed_limit, newest first"
    )
    more: str | None = None
    note: str | None = None
    memory: Remembered | None = None
    complete: bool = True
    reason: str | None = None


class HistoryEntry(BaseModel):
    """One message to a number."""

    time: str | None = None
    session: int
    title: str | None = None
    status: str | None = None
    reason: str | None = None


class Recipient(BaseModel):
    """A number and what its messages in scope came to; last_*: its latest message of the outcomes asked for."""

    number: str
    name: str | None = None
    country: str | None = None
    messages: int
    delivered: int
    failed: int
    rejected: int
    pending: int
    last_status: str | None = None
    last_reason: str | None = None
    last_time: str | None = None
    sessions: list[int]
    delivered_later: bool = Field(description="Delivered after its last message asked for")
    history: list[HistoryEntry] | None = Field(None, description="For numbers asked, up to 50 messages")


class Recipients(BaseModel):
    """Numbers, once each, latest first; ``csv``: the URI of the whole list, when cut."""

    recipients: list[Recipient]
    total: int = Field(description="Numbers in all")
    sessions: int
    not_found: list[str] = Field(default_factory=list, description="Numbers asked with no message in scope")
    csv: str | None = None
    more: str | None = None
    note: str | None = None
    memory: Remembered | None = None
    complete: bool = True
    reason: str | None = None


def cut(text: str | None, chars: int = TEXT_CHARS) -> str | None:
    return text[: chars - 1] + "…" if text is not None and len(text) > chars else text
