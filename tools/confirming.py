"""What every delete tool shares: the confirm arguments, the user's approval form, the checks before a delete,
and looking sessions up.

A delete call runs in three steps. A *plan* resolver works out what the call asks for and what exists
(validation, token check, look-ups); an *ask* resolver turns a confirmed plan into a question for the user when
the client can ask one; the tool body then previews, refuses, or deletes, and writes the audit record. The
resolvers run again on the round that brings the user's answer (2026-07-28), so they only read.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated, Literal

from mcp.server.mcpserver import Elicit
from pydantic import BaseModel, Field

from server.context import AppContext, ToolContext, app_context
from server.textmagic import TextMagicError
from server.textmagic.models import MessageSession
from tools.scan import gather

Confirm = Annotated[
    bool,
    Field(description="True only after the user agreed to the preview, with its confirmation_token"),
]
ConfirmationToken = Annotated[
    str | None,
    Field(
        max_length=512,
        description="From the preview",
    ),
]


class DeleteApproval(BaseModel):
    """The form the user sees before a confirmed delete."""

    confirm: bool = Field(
        title="Delete permanently",
        description="Yes, delete these sessions and all their messages. This cannot be undone.",
    )


# What the approval resolver yields when nobody is asked; the body then never reads it.
NOT_ASKED = DeleteApproval(confirm=False)


@dataclass(frozen=True)
class Refusal:
    outcome: Literal["refused", "failed"]
    reason: str


def gate(ctx: ToolContext, confirm: bool, token: str | None) -> Refusal | None:
    """The checks every delete passes before anything is looked up: who can approve, and that a confirmation
    carries its token."""
    if app_context(ctx).settings.require_human_confirmation and not can_ask_user(ctx):
        return Refusal("refused", HUMAN_REQUIRED)
    if confirm and not token:
        return Refusal("refused", CONFIRM_WITHOUT_PREVIEW)
    return None


def can_ask_user(ctx: ToolContext) -> bool:
    # Form elicitation, as the SDK counts it: a bare capability (from before modes existed) or form mode.
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def question(ctx: ToolContext, summary: str) -> Elicit[DeleteApproval]:
    where = "[SANDBOX, made-up data] " if app_context(ctx).settings.sandbox else ""
    return Elicit(f"{where}Delete {summary}? Their messages go too; this cannot be undone.", DeleteApproval)


async def look_up(
    ctx: ToolContext, app: AppContext, ids: tuple[int, ...]
) -> tuple[tuple[MessageSession, ...], tuple[int, ...]]:
    """The sessions among ``ids`` that exist (in that order), and the ids that do not."""
    done = 0

    async def one(session_id: int) -> MessageSession | None:
        nonlocal done
        try:
            found: MessageSession | None = await app.textmagic.get_session(session_id)
        except TextMagicError as exc:
            if exc.status != 404:
                raise
            found = None
        done += 1
        await ctx.report_progress(done, len(ids), f"Looked up {done} of {len(ids)} sessions")
        return found

    results = await gather([functools.partial(one, i) for i in ids])
    found = tuple(session for session in results if session is not None)
    return found, tuple(sorted(i for i, session in zip(ids, results, strict=True) if session is None))


def sessions_phrase(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def id_list(ids: tuple[int, ...] | list[int]) -> str:
    return ", ".join(str(i) for i in ids)


HUMAN_REQUIRED = (
    "Nothing was deleted. This server requires a person to approve every delete in the MCP client "
    "(TEXTMAGIC_REQUIRE_HUMAN_CONFIRMATION=true), and this client cannot ask its user: it did not declare "
    "elicitation support. Use a client that can show confirmation forms (such as Claude Code or VS Code), "
    "or ask the server's operator."
)
CONFIRM_WITHOUT_PREVIEW = (
    "Nothing was deleted. confirm=true needs the confirmation_token from a preview. Call again without "
    "confirm to get a preview and a token, and show the preview to the user first."
)
