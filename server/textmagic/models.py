"""TextMagic's objects as its API returns them: the single source of their JSON Schemas.

Fields carry TextMagic's own camelCase names, so they match TextMagic's documentation. Every model accepts
fields TextMagic may add later (they are passed through, not dropped) and null for anything TextMagic may leave
out. Descriptions are kept for what a name does not say (codes, units): every one is read with every tool
listing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def parse_time(value: str | None) -> datetime | None:
    """A TextMagic time (``2026-11-26T09:48:24+0000``, or any ISO 8601 form), aware; None if absent or unreadable."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


class DeliveryStatus(StrEnum):
    """q queued, s scheduled, r sent to operator, a acknowledged, b queued by operator, d delivered, e send error,
    f delivery failed, j rejected, u unknown; i, p, h undocumented"""

    QUEUED = "q"
    SCHEDULED = "s"
    SENT_TO_OPERATOR = "r"
    ACKNOWLEDGED = "a"
    QUEUED_BY_OPERATOR = "b"
    DELIVERED = "d"
    SEND_ERROR = "e"
    DELIVERY_FAILED = "f"
    REJECTED = "j"
    UNKNOWN = "u"
    UNDOCUMENTED_I = "i"
    UNDOCUMENTED_P = "p"
    UNDOCUMENTED_H = "h"


class TextMagicModel(BaseModel):
    """A TextMagic object: camelCase on the wire, unknown fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
    )


class MessageSession(TextMagicModel):
    """One send-out (a campaign, an API batch)."""

    id: int
    start_time: str | None = None
    text: str | None = Field(None, description="With tags such as {First name}")
    source: str | None = Field(None, description="O web app, A API, M messenger, E email, X list")
    reference_id: str | None = None
    price: float | None = Field(None, description="In the account currency")
    numbers_count: int | None = Field(None, description="Recipients")
    destination: str | None = Field(None, description="t text, s speech, v voice")
    title: str | None = None


class SessionsPage(TextMagicModel):
    """A page of sessions, newest first."""

    page: int
    page_count: int = Field(description="Pages at this limit")
    limit: int
    resources: list[MessageSession]


class SessionStat(TextMagicModel):
    """A session's messages by TextMagic's delivery statistics."""

    all: int
    delivered: int
    failed: int
    rejected: int
    accepted: int = Field(description="Accepted, not yet sent on")
    sent: int = Field(description="Sent, not yet delivered")
    scheduled: int


class MessageOut(TextMagicModel):
    """One message of a session: one recipient. The fields a reader needs are typed; the rest TextMagic sends
    (phone, contactId, charset, avatar, fromEmail, senderSource, session, ...) pass through as they are."""

    id: int
    receiver: str | None = None
    status: str | None = Field(None, description="Delivery status code (as in statuses); g: had unsubscribed")
    text: str | None = None
    message_time: str | None = None
    price: float | None = Field(None, description="In the account currency")
    parts_count: int | None = None
    country: str | None = Field(None, description="ISO 3166 code")
    first_name: str | None = None
    last_name: str | None = None
    session_id: int | None = None
    sender: str | None = None
    reject_reason: str | None = Field(None, description="Code of the rejection reason")
    deleted: bool | None = None


class MessagesPage(TextMagicModel):
    """A page of a session's messages."""

    page: int
    page_count: int = Field(description="Pages at this limit")
    limit: int
    resources: list[MessageOut]
