"""The tools' argument types and result models: with TextMagic's own models (``server.textmagic.models``), the
single source of every JSON Schema the server publishes. A result never carries null (``tools.render`` leaves
nulls out), so an optional field is simply absent when it has nothing to say.

TextMagic's fields keep TextMagic's camelCase names; the server's own are snake_case. Descriptions say what a
name does not: every one is read with every tool listing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from server.textmagic.models import MessageSession
from tools.outcomes import Counter, Counts

# A session's text in a result is cut to this many characters: enough to recognise it.
TEXT_CHARS = 80
# Beyond 2**53 - 1 many JSON clients lose integer precision, so no real id can be larger.
MAX_ID = 2**53 - 1
MAX_BULK_IDS = 100

# A positive id that JSON clients can hold exactly.
IdValue = Annotated[int, Field(ge=1, le=MAX_ID)]
SessionId = Annotated[IdValue, Field(description="Session id")]
Page = Annotated[int, Field(ge=1, le=1_000_000)]
Limit = Annotated[int, Field(ge=1, le=100)]
IncludeDeleted = Annotated[
    bool,
    Field(description="Also deleted messages"),
]
GroupBy = Literal["country", "status", "reject_reason", "sender", "session", "day"]


class SessionPreview(BaseModel):
    """A session, briefly: as a delete would remove it, or as a report is about it."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, serialize_by_alias=True)

    id: int
    start_time: str | None = None
    title: str | None = None
    text: str | None = None
    numbers_count: int | None = None
    price: float | None = None

    @classmethod
    def of(cls, session: MessageSession) -> SessionPreview:
        return cls(
            id=session.id,
            start_time=session.start_time,
            title=session.title,
            text=cut(session.text),
            numbers_count=session.numbers_count,
            price=session.price,
        )


class DeletePreview(BaseModel):
    """What a confirmed call would delete."""

    sessions: list[SessionPreview] = Field(description="All asked for by id; a filter's first 20")
    ids: list[int] = Field(default_factory=list, description="To confirm with")
    count: int
    recipients: int
    price: float = Field(description="Not refunded")
    filter: str | None = None


class DeleteResult(BaseModel):
    """A preview with a confirmation token, or what was deleted."""

    deleted: bool = Field(description="Only true when this call deleted")
    message: str
    preview: DeletePreview | None = None
    confirmation_token: str | None = None
    expires_at: str | None = None
    deleted_count: int = 0
    deleted_ids: list[int] = Field(default_factory=list, description="The first 100")
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

    @classmethod
    def of(cls, session: MessageSession, counts: Counts | None = None) -> SessionBrief:
        outcome = counts.model_dump() if counts is not None else {}
        return cls(
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
    price: float
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
    (listed first: pydantic orders base fields last to first)."""

    cost: float = Field(0.0, description="Account currency")

    @classmethod
    def of(cls, counter: Counter, key: str | None = None) -> GroupRow:
        return cls(key=key, cost=round(counter.cost, 4), **counter.buckets)


class DeliveryReport(BaseModel):
    """What happened to one session, or to every session a filter matched."""

    session: SessionPreview | None = None
    sessions: int
    filter: str | None = None
    messages: int
    outcome: GroupRow
    groups: dict[str, list[GroupRow]] = Field(default_factory=dict)
    failed_count: int
    failed: list[FailedMessage] = Field(
        default_factory=list, description="The first failed_limit, newest first"
    )
    more: str | None = None
    complete: bool = True
    reason: str | None = None


class FailedRecipient(BaseModel):
    """A number whose messages failed or were rejected."""

    number: str
    name: str | None = None
    country: str | None = None
    failures: int
    last_status: str | None = None
    last_reason: str | None = None
    last_time: str | None = None
    sessions: list[int]
    delivered_later: bool = Field(description="A later message to it was delivered")


class FailedRecipients(BaseModel):
    """Failed or rejected recipients, one per number, most recent failure first."""

    recipients: list[FailedRecipient]
    total: int = Field(description="Numbers in all")
    sessions: int
    csv: str | None = Field(None, description="URI of the whole list as CSV, when cut")
    more: str | None = None
    complete: bool = True
    reason: str | None = None


def cut(text: str | None) -> str | None:
    return text[: TEXT_CHARS - 1] + "…" if text is not None and len(text) > TEXT_CHARS else text
