"""Deleting a previewed set of sessions: ``delete_message_sessions_matching`` (cleanup by filter: "last week's test
sessions", "everything before May"), and ``delete_message_sessions_bulk`` with ``all``.

The preview scans for the sessions the filter matches (all of them, for ``all``) and keeps that exact set for
its token (``server.state.previews``). The confirmation deletes those sessions and nothing else: a session created or
matched after the preview is never deleted by it, and sessions that vanished meanwhile are reported. Deletion
goes in chunks of at most 100 ids through the bulk endpoint, never ``all: 1``; a chunk whose outcome is
uncertain is checked, not sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Annotated

from mcp.server.mcpserver import Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from server.state.audit import Outcome
from server.state.confirmation import Claims, ConfirmationError, IssuedToken, Target
from server.state.context import AppContext, ToolContext, app_context, client_name
from server.state.ledger import StateUnavailable
from server.textmagic import TextMagicError
from server.textmagic.models import MessageSession
from tools.briefs import brief
from tools.confirming import (
    NOT_ASKED,
    Chunked,
    Confirm,
    ConfirmationToken,
    DeleteApproval,
    Refusal,
    audited,
    can_ask_user,
    declined,
    delete_in_chunks,
    gate,
    question,
    sessions_phrase,
    still_there,
    still_unused,
    unused,
    use_up,
)
from tools.filters import NARROWING_NAMES, SessionFilter, SessionQuery, with_filter
from tools.models import MatchingDeleteResult, MatchingPreview
from tools.render import as_result
from tools.scan import scan_sessions

MATCHING = "delete_message_sessions_matching"
PREVIEW_LIST = 20
IDS_SHOWN = 100

NO_FILTER = (
    f"Nothing was deleted. delete_message_sessions_matching needs at least one of {NARROWING_NAMES}. To delete every session, use delete_message_sessions_bulk with all=true (which the server "
    "allows only with TEXTMAGIC_ALLOW_DELETE_ALL=true)."
)
PREVIEW_UNKNOWN = (
    "Nothing was deleted. This server does not know the preview of that token: it expired, the server restarted, "
    "or another replica made it (replicas share previews only through TEXTMAGIC_REDIS_URL). Call again without "
    "confirm for a fresh preview, and show it to the user."
)


@dataclass(frozen=True)
class SetPlan:
    """What a delete of a previewed set asks for and what exists, worked out before anything is deleted."""

    tool: str
    confirm: bool
    flt: SessionFilter | None = None
    # The preview: every session matched. The confirmation: those previewed that are still there.
    sessions: tuple[MessageSession, ...] = ()
    vanished: tuple[int, ...] = ()
    added: int = 0
    scan_note: str | None = None
    claims: Claims | None = None
    refusal: Refusal | None = None
    ask_human: bool = False

    @property
    def ids(self) -> list[int]:
        return [session.id for session in self.sessions]

    @property
    def everything(self) -> bool:
        return self.flt is not None and self.flt.everything

    def summary(self) -> str:
        numbers = sum(s.numbers_count or 0 for s in self.sessions)
        price = sum(s.price or 0.0 for s in self.sessions)
        which = "ALL " if self.everything else ""
        what = "of the account" if self.everything else f"matching {self.flt.describe() if self.flt else ''}"
        return (
            f"{which}{sessions_phrase(len(self.sessions))} {what} ({numbers} recipients, {price:.2f} in account "
            "currency)"
        )


async def plan_set(
    ctx: ToolContext, tool: str, query: SessionQuery | None, confirm: bool, token: str | None
) -> SetPlan:
    """``query``: the filter; None for every session."""
    app = app_context(ctx)
    plan = SetPlan(tool=tool, confirm=confirm)
    if query is not None and not query.narrows:
        return replace(plan, refusal=Refusal("refused", NO_FILTER))
    if refusal := gate(ctx, confirm, token):
        return replace(plan, refusal=refusal)
    try:
        flt = (
            SessionFilter.of(query, app.settings.timezone)
            if query
            else SessionFilter.everything_in(app.settings.timezone)
        )
    except ToolError as exc:
        return replace(plan, refusal=Refusal("refused", f"Nothing was deleted. {exc}"))
    plan = replace(plan, flt=flt)
    try:
        if not confirm:
            scan = await scan_sessions(ctx, flt)
            return replace(plan, sessions=tuple(scan.sessions), scan_note=scan.reason)
        assert token is not None, "gate() refuses a confirmation without its token"
        claims = app.confirmations.open(token, tool)
        if refusal := await unused(app, claims):
            return replace(plan, refusal=refusal)
        previewed = await app.previews.get(claims.nonce)
        if previewed is None:
            return replace(plan, refusal=Refusal("refused", PREVIEW_UNKNOWN))
        app.confirmations.verify(token, tool, Target.matching(flt.digest(), previewed))
        standing = await still_there(ctx, app, flt, previewed)
    except ConfirmationError as exc:
        return replace(plan, refusal=Refusal("refused", f"Nothing was deleted. {exc}"))
    except (TextMagicError, StateUnavailable) as exc:
        return replace(plan, refusal=Refusal("failed", f"Nothing was deleted. {exc}"))
    return replace(
        plan,
        sessions=standing.present,
        vanished=standing.vanished,
        added=standing.added,
        claims=claims,
        ask_human=can_ask_user(ctx) and bool(standing.present),
    )


def ask_set(ctx: ToolContext, plan: SetPlan) -> Elicit[DeleteApproval] | DeleteApproval:
    return question(ctx, plan.summary(), plan.sessions) if plan.ask_human else NOT_ASKED


@dataclass(frozen=True)
class SetOutcome:
    """How a delete of a previewed set ended, for each tool to say in its own result."""

    message: str
    issued: IssuedToken | None = None
    done: Chunked | None = None


async def carry_out_set(
    ctx: ToolContext, plan: SetPlan, approval: ElicitationResult[DeleteApproval]
) -> SetOutcome:
    app = app_context(ctx)
    client = client_name(ctx)

    def audit(outcome: Outcome, detail: str = "") -> None:
        where = "all sessions" if plan.everything else f"filter: {plan.flt.describe()}" if plan.flt else ""
        app.audit.record(
            tool=plan.tool,
            outcome=outcome,
            client=client,
            ids=plan.ids[:IDS_SHOWN],
            delete_all=plan.everything,
            all_sessions_count=len(plan.sessions) if plan.everything else None,
            detail=f"{where}; {len(plan.sessions)} sessions; {detail}".strip("; "),
        )

    if plan.refusal:
        audit(plan.refusal.outcome, plan.refusal.reason)
        raise ToolError(plan.refusal.reason)
    if not plan.confirm:
        return await _preview(app, plan, audit)
    assert plan.claims is not None, "a confirmed plan holds its token's claims"
    await still_unused(app, plan.claims, audit)
    if not plan.sessions:
        audit("nothing_to_delete")
        return SetOutcome("Nothing was deleted: none of the previewed sessions exists any more.")
    if answer := await declined(app, plan.claims, plan.ask_human, approval, audit):
        return SetOutcome(answer)
    await use_up(app, plan.claims, audit)
    with audited(ctx, plan.tool, plan.ids[:IDS_SHOWN]) as trail:
        done = await delete_in_chunks(ctx, app, plan.ids)
        outcome: Outcome = "uncertain" if done.uncertain else "deleted" if done.deleted else "failed"
        trail.record(outcome, ids=done.deleted[:IDS_SHOWN], detail=done.problem or "")
    notes = [f"Deleted {sessions_phrase(len(done.deleted))} and all their messages."]
    if plan.vanished:
        notes.append(f"{len(plan.vanished)} previewed sessions were already gone.")
    if plan.added:
        notes.append(f"{plan.added} sessions that match now but were not previewed were left alone.")
    if done.uncertain:
        notes.append(
            f"The outcome of {len(done.uncertain)} is unknown (the delete was sent, then the connection failed and "
            "checking failed too): look them up with get_message_session before anything else."
        )
    if done.problem:
        notes.append(f"Stopped: {done.problem}")
    return SetOutcome(" ".join(notes), done=done)


async def _preview(app: AppContext, plan: SetPlan, audit: Callable[[Outcome], None]) -> SetOutcome:
    if not plan.sessions:
        audit("nothing_to_delete")
        what = "The account has no sessions" if plan.everything else "No session matches this filter"
        return SetOutcome(f"Nothing to delete: {what}.")
    assert plan.flt is not None
    issued = app.confirmations.issue(plan.tool, Target.matching(plan.flt.digest(), plan.ids))
    await app.previews.put(issued.nonce, plan.ids)
    audit("preview")
    listed = f" The first {PREVIEW_LIST} are listed." if len(plan.sessions) > PREVIEW_LIST else ""
    partial = f" Note: the scan {plan.scan_note}." if plan.scan_note else ""
    again = "all=true" if plan.everything else "the same filter"
    return SetOutcome(
        f"Nothing was deleted yet. This would delete {plan.summary()}, with all their messages.{listed}{partial} "
        f"Show this preview to the user; only after they agree, call {plan.tool} again with {again}, "
        "confirm=true and this confirmation_token. Sessions that appear after this preview are not deleted by it.",
        issued=issued,
    )


@with_filter
async def plan_matching(
    ctx: ToolContext, *, query: SessionQuery, confirm: bool, confirmation_token: str | None
) -> SetPlan:
    return await plan_set(ctx, MATCHING, query, confirm, confirmation_token)


async def ask_matching(
    ctx: ToolContext, plan: Annotated[SetPlan, Resolve(plan_matching)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    return ask_set(ctx, plan)


@with_filter
async def delete_message_sessions_matching(
    ctx: ToolContext,
    plan: Annotated[SetPlan, Resolve(plan_matching)],
    approval: Annotated[ElicitationResult[DeleteApproval], Resolve(ask_matching)],
    *,
    query: SessionQuery,
    confirm: Confirm = False,
    confirmation_token: ConfirmationToken = None,
) -> Annotated[CallToolResult, MatchingDeleteResult]:
    """Delete the sessions a filter matches (since, until, text, source, destination: one at least) with all
    their messages. Not refunded; cannot be undone.

    Two calls. Without confirm nothing is deleted: the result previews what would go, with a confirmation_token
    for exactly those. Show it to the user; only after they agree, call again with confirm=true and the token.
    """
    ended = await carry_out_set(ctx, plan, approval)
    done = ended.done
    sessions = plan.sessions if not plan.confirm else ()
    preview = None
    if not plan.confirm and plan.flt is not None:
        preview = MatchingPreview(
            sessions=[brief(s) for s in sessions[:PREVIEW_LIST]],
            count=len(sessions),
            recipients=sum(s.numbers_count or 0 for s in sessions),
            price=round(sum(s.price or 0.0 for s in sessions), 4),
            filter=plan.flt.describe(),
        )
    return as_result(
        MatchingDeleteResult(
            deleted=bool(done and done.deleted),
            message=ended.message,
            preview=preview,
            confirmation_token=ended.issued.token if ended.issued else None,
            expires_at=ended.issued.expires_at.isoformat() if ended.issued else None,
            deleted_count=len(done.deleted) if done else 0,
            deleted_ids=done.deleted[:IDS_SHOWN] if done else [],
            vanished_ids=list(plan.vanished[:IDS_SHOWN]),
            uncertain_ids=done.uncertain[:IDS_SHOWN] if done else [],
        )
    )
