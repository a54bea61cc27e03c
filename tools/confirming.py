"""What every delete tool shares: the confirm arguments, the user's approval form, the checks before a delete, the
single use of a confirmation, the audit around the delete, and looking sessions up.

A delete call runs in three steps. A *plan* resolver works out what the call asks for and what exists
(validation, token check, look-ups); an *ask* resolver turns a confirmed plan into a question for the user when
the client can ask one; the tool body then previews, refuses, or deletes, and writes the audit records. The
resolvers run again on the round that brings the user's answer (2026-07-28), so they only read; the body claims
the token, so that a confirmation deletes once however often it is sent.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Annotated, Literal, Protocol

import anyio
from mcp.server.mcpserver import AcceptedElicitation, CancelledElicitation, Elicit, ElicitationResult
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field, StrictBool

from server.state.audit import Outcome
from server.state.confirmation import Claims
from server.state.context import AppContext, ToolContext, app_context, client_name
from server.state.ledger import StateUnavailable
from server.textmagic import TextMagicError, UncertainOutcome
from server.textmagic.models import MessageSession
from tools.filters import SessionFilter
from tools.scan import gather, scan_sessions

# Sessions the person's form names one by one; the rest are counted.
NAMED = 10
CHUNK = 100

# Strict: only JSON true deletes; "yes", 1 or "true" are refused, not read as true.
Confirm = Annotated[
    StrictBool,
    Field(description="True only after the user agreed to the preview, with its confirmation_token"),
]
ConfirmationToken = Annotated[str | None, Field(max_length=512, description="From the preview")]


class DeleteApproval(BaseModel):
    """The form the user sees before a confirmed delete."""

    confirm: StrictBool = Field(
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


async def unused(app: AppContext, claims: Claims) -> Refusal | None:
    """Refuse a token already used, before anything is looked up or anybody asked."""
    try:
        if await app.ledger.used(claims.nonce):
            return Refusal("refused", ALREADY_USED)
    except StateUnavailable as exc:
        return Refusal("failed", f"{LEDGER_DOWN} ({exc})")
    return None


async def claim(app: AppContext, claims: Claims) -> Refusal | None:
    """Use the token up: of concurrent confirmations with it, exactly one gets None and goes on."""
    try:
        if await app.ledger.claim(claims.nonce, claims.expires):
            return None
    except StateUnavailable as exc:
        return Refusal("failed", f"{LEDGER_DOWN} ({exc})")
    return Refusal("refused", ALREADY_USED)


class Audit(Protocol):
    """Writes one audit record of the delete call at hand."""

    def __call__(self, outcome: Outcome, detail: str = "") -> None: ...


async def still_unused(app: AppContext, claims: Claims, audit: Audit) -> None:
    """Again in the body: a concurrent confirmation with the same token may have used it since the plan was
    made. Raises the refusal for the model."""
    if refusal := await unused(app, claims):
        audit(refusal.outcome, refusal.reason)
        raise ToolError(refusal.reason)


async def declined(
    app: AppContext, claims: Claims, asked: bool, approval: ElicitationResult[DeleteApproval], audit: Audit
) -> str | None:
    """When the person was asked and did not approve, what to tell the model; None when the delete may go on.
    The person has answered: the token is spent either way."""
    if not asked or (isinstance(approval, AcceptedElicitation) and approval.data.confirm):
        return None
    await claim(app, claims)
    cancelled = isinstance(approval, CancelledElicitation)
    audit("cancelled" if cancelled else "declined")
    how = "cancelled the confirmation" if cancelled else "did not approve the delete"
    return f"Nothing was deleted: the user {how}. Do not retry unless the user asks again."


async def use_up(app: AppContext, claims: Claims, audit: Audit) -> None:
    """Claims the token for this call, or raises the refusal: of concurrent confirmations, one goes on."""
    if refusal := await claim(app, claims):
        audit(refusal.outcome, refusal.reason)
        raise ToolError(refusal.reason)


def can_ask_user(ctx: ToolContext) -> bool:
    # Form elicitation, as the SDK counts it: a bare capability (from before modes existed) or form mode.
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def question(ctx: ToolContext, summary: str, sessions: Sequence[MessageSession]) -> Elicit[DeleteApproval]:
    """The form: what goes, named session by session (a hallucinated id shows as what it is), then counted."""
    where = "[SANDBOX, made-up data] " if app_context(ctx).settings.sandbox else ""
    named = "; ".join(_named(session) for session in sessions[:NAMED])
    rest = f"; and {sessions_phrase(len(sessions) - NAMED)} more" if len(sessions) > NAMED else ""
    return Elicit(
        f"{where}Delete {summary}? {named}{rest}. Their messages go too; this cannot be undone.",
        DeleteApproval,
    )


def _named(session: MessageSession) -> str:
    words = (session.title or session.text or "").strip()
    words = words if len(words) <= 40 else words[:39] + "…"
    return f"{session.id} ({(session.start_time or '')[:10] or 'no date'}{', ' + words if words else ''})"


@dataclass
class Audited:
    """The audit of one confirmed delete: a record before anything is sent, and one of how it ended."""

    app: AppContext
    tool: str
    client: str | None
    ids: list[int]
    ended: bool = False

    def record(self, outcome: Outcome, ids: Sequence[int] | None = None, detail: str = "") -> None:
        self.app.audit.record(
            tool=self.tool,
            outcome=outcome,
            client=self.client,
            ids=self.ids if ids is None else ids,
            detail=detail,
        )
        self.ended = outcome != "sending"


@contextmanager
def audited(ctx: ToolContext, tool: str, ids: list[int]) -> Iterator[Audited]:
    """Write "sending" now; on the way out, how it ended (the body records it), or "cancelled" when the call
    was cancelled (client gone, timeout, shutdown) and "failed" on an error, whatever was sent by then."""
    trail = Audited(app_context(ctx), tool, client_name(ctx), ids)
    trail.record("sending")
    try:
        yield trail
    except anyio.get_cancelled_exc_class():
        trail.record(
            "cancelled", detail="the call was cancelled while deleting: what was sent may have been done"
        )
        raise
    except Exception as exc:
        trail.record("failed", detail=str(exc))
        raise
    if not trail.ended:
        trail.record("failed", detail="ended without an outcome")


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


@dataclass(frozen=True)
class Standing:
    """Of the sessions a preview showed, those there now; those gone; how many match now that it did not show."""

    present: tuple[MessageSession, ...]
    vanished: tuple[int, ...]
    added: int


async def still_there(
    ctx: ToolContext, app: AppContext, flt: SessionFilter, previewed: frozenset[int]
) -> Standing:
    """The filter scanned again; previewed sessions it does not find are looked up one by one."""
    scan = await scan_sessions(ctx, flt)
    now = {session.id: session for session in scan.sessions}
    present = tuple(now[i] for i in sorted(previewed, reverse=True) if i in now)
    unseen = tuple(sorted(i for i in previewed if i not in now))
    found, vanished = await look_up(ctx, app, unseen) if unseen else ((), ())
    return Standing(present + found, vanished, len(set(now) - previewed))


@dataclass
class Chunked:
    deleted: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    problem: str | None = None


async def delete_in_chunks(ctx: ToolContext, app: AppContext, ids: list[int]) -> Chunked:
    """Delete ``ids`` CHUNK at a time. A chunk that may or may not have been carried out is looked up, never sent
    again; a definite failure, or a check that fails, stops the rest."""
    done = Chunked()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        try:
            await app.textmagic.delete_sessions(chunk)
        except UncertainOutcome as failure:
            try:
                still, gone = await look_up(ctx, app, tuple(chunk))
            except TextMagicError:
                done.uncertain += chunk
                done.problem = f"{failure} Checking which were deleted failed too; nothing more was sent."
                return done
            done.deleted += list(gone)
            if still:
                done.problem = (
                    f"{failure} Checked afterwards: {len(still)} of that chunk are still there; nothing more was "
                    "sent. Ask for a new preview to delete them."
                )
                return done
            continue
        except TextMagicError as exc:
            done.problem = str(exc)
            return done
        done.deleted += chunk
        await ctx.report_progress(len(done.deleted), len(ids), f"Deleted {len(done.deleted)} of {len(ids)}")
    return done


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
ALREADY_USED = (
    "Nothing was deleted. This confirmation_token was used already: a confirmation works once. Call again "
    "without confirm for a fresh preview, and show it to the user."
)
LEDGER_DOWN = (
    "Nothing was deleted: the record of used confirmations (Redis, TEXTMAGIC_REDIS_URL) cannot be reached, and "
    "a delete is not done unguarded. Try again once it is back"
)
