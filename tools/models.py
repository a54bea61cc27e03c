"""The tools' argument types and result models: with TextMagic's own models (``server.textmagic.models``), the
single source of every JSON Schema the server publishes."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from server.textmagic.models import OutputModel, TextMagicModel
from server.textmagic.untrusted import UntrustedText

# Beyond 2**53 - 1 many JSON clients lose integer precision, so no real id can be larger.
MAX_ID = 2**53 - 1
MAX_BULK_IDS = 100

SessionId = Annotated[
    int,
    Field(ge=1, le=MAX_ID, description="Session id, as listed by get_all_message_sessions."),
]
Page = Annotated[int, Field(ge=1, le=1_000_000, description="Page number, starting at 1.")]
Limit = Annotated[int, Field(ge=1, le=100, description="Results per page: 1 to 100.")]
IncludeDeleted = Annotated[
    bool,
    Field(
        description="Also include messages that were deleted from the account's message history. "
        "False (the default) leaves them out."
    ),
]


class SessionPreview(TextMagicModel):
    """What a delete would remove: one session, briefly."""

    id: int
    start_time: str | None = None
    text: UntrustedText | None = Field(None, description="The session text, cut short.")
    numbers_count: int | None = None
    price: float | None = None


class DeletePreview(OutputModel):
    """What a confirmed call would delete."""

    sessions: list[SessionPreview] = Field(
        default_factory=list, description="Each session that would be deleted, with all its messages."
    )
    ids: list[int] = Field(
        default_factory=list, description="The ids the confirming call must pass (missing ones left out)."
    )
    missing_ids: list[int] = Field(default_factory=list, description="Requested ids that do not exist.")
    total_numbers_count: int = Field(0, description="Recipients across those sessions.")
    total_price: float = Field(0.0, description="Their cost in the account currency (not refunded).")
    all_sessions_count: int | None = Field(
        None, description="For all=true: the number of sessions on the account, all of which would go."
    )


class DeleteResult(OutputModel):
    """Outcome of a delete call: a preview with a confirmation token, or what was deleted."""

    deleted: bool = Field(description="True only when sessions were deleted by this call.")
    message: str = Field(description="What happened, and what to do next.")
    preview: DeletePreview | None = Field(None, description="Present on an unconfirmed call.")
    confirmation_token: str | None = Field(
        None,
        description="Pass back with confirm=true, after the user agreed. Absent when nothing can be deleted.",
    )
    expires_at: str | None = Field(None, description="When the confirmation token stops working (UTC).")
    deleted_ids: list[int] = Field(default_factory=list, description="Sessions deleted by this call.")
    deleted_all: bool = Field(False, description="True when every session of the account was deleted.")
    not_found_ids: list[int] = Field(
        default_factory=list, description="Ids that no longer existed when the delete ran."
    )
    outcome_unknown: bool = Field(
        False,
        description="True when the connection failed after the delete was sent and checking afterwards failed "
        "too: the sessions may or may not be gone.",
    )
