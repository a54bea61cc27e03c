"""delete_message_sessions_matching: cleanup by filter ("last week's test sessions", "everything before May"), with
the safety of the bulk delete.

The preview scans for the sessions the filter matches and keeps that exact set for its token (``PreviewStore``).
The confirmation deletes those sessions and nothing else: a session created or matched after the preview is
never deleted by it, and sessions that vanished meanwhile are reported. Deletion goes in chunks of at most 100
ids through the bulk endpoint, never ``all``; a chunk whose outcome is uncertain is checked, not sent again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from mcp.server.mcpserver import AcceptedElicitation, CancelledElicitation, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult

from server.audit import Outcome
from server.confirmation import ConfirmationError, Target
from server.context import AppContext, ToolContext, app_context, client_name
from server.textmagic import TextMagicError, UncertainOutcome
from server.textmagic.models import MessageSession
from tools.briefs import brief
from tools.confirming import (
    NOT_ASKED,
    Confirm,
    ConfirmationToken,
    DeleteApproval,
    Refusal,
    can_ask_user,
    gate,
    look_up,
    question,
    sessions_phrase,
)
from tools.filters import (
    Destinations,
    SessionFilter,
    SessionQuery,
    Since,
    Sources,
    TextFilter,
    TimeZone,
    Until,
)
from tools.models import MatchingDeleteResult, MatchingPreview
from tools.render import as_result
from tools.scan import scan_sessions

MATCHING = "delete_message_sessions_matching"
CHUNK = 100
PREVIEW_LIST = 20
IDS_SHOWN = 100

NO_FILTER = (
    "Nothing was deleted. delete_message_sessions_matching needs at least one of since, until, text, source or "
    "destination. To delete every session, use delete_message_sessions_bulk with all=true (which the server "
    "allows only with TEXTMAGIC_ALLOW_DELETE_ALL=true)."
)
PREVIEW_UNKNOWN = (
    "Nothing was deleted. This server does not know the preview of that token: it expired, the server restarted, "
    "or another replica made it (replicas share previews only through TEXTMAGIC_REDIS_URL). Call again without "
    "confirm for a fresh preview, and show it to the user."
)


@dataclass(frozen=True)
class MatchingPlan:
    """What a matching delete asks for and what exists, worked out before anything is deleted."""

    confirm: bool
    flt: SessionFilter | None = None
    # The preview: every session matched. The confirmation: those previewed that still exist.
    sessions: tuple[MessageSession, ...] = ()
    vanished: tuple[int, ...] = ()
    added: int = 0
    scan_note: str | None = None
    refusal: Refusal | None = None
    ask_human: bool = False

    @property
    def ids(self) -> list[int]:
        return [session.id for session in self.sessions]

    def summary(self) -> str:
        numbers = sum(s.numbers_count or 0 for s in self.sessions)
        price = sum(s.price or 0.0 for s in self.sessions)
        return (
            f"{sessions_phrase(len(self.sessions))} ({numbers} recipients, {price:.2f} in account currency)"
        )


async def plan_matching(
    ctx: ToolContext,
    since: str | None,
    until: str | None,
    timezone: str | None,
    text: str | None,
    source: list[str] | None,
    destination: list[str] | None,
    confirm: bool,
    confirmation_token: str | None,
) -> MatchingPlan:
    app = app_context(ctx)
    plan = MatchingPlan(confirm=confirm)
    query = SessionQuery.model_validate(
        {
            "since": since,
            "until": until,
            "timezone": timezone,
            "text": text,
            "source": source,
            "destination": destination,
        }
    )
    if not query.narrows:
        return replace(plan, refusal=Refusal("refused", NO_FILTER))
    if refusal := gate(ctx, confirm, confirmation_token):
        return replace(plan, refusal=refusal)
    try:
        flt = SessionFilter.of(query, app.settings.timezone)
    except ToolError as exc:
        return replace(plan, refusal=Refusal("refused", f"Nothing was deleted. {exc}"))
    plan = replace(plan, flt=flt)
    try:
        if not confirm:
            scan = await scan_sessions(ctx, flt)
            return replace(plan, sessions=tuple(scan.sessions), scan_note=scan.reason)
        assert confirmation_token is not None, "gate() refuses a confirmation without its token"
        claims = app.confirmations.open(confirmation_token, MATCHING)
        previewed = app.previews.get(claims.nonce)
        if previewed is None:
            return replace(plan, refusal=Refusal("refused", PREVIEW_UNKNOWN))
        app.confirmations.verify(confirmation_token, MATCHING, Target.matching(flt.digest(), previewed))
        plan = await _still_there(ctx, app, plan, flt, previewed)
    except ConfirmationError as exc:
        return replace(plan, refusal=Refusal("refused", f"Nothing was deleted. {exc}"))
    except TextMagicError as exc:
        return replace(plan, refusal=Refusal("failed", f"Nothing was deleted. {exc}"))
    return replace(plan, ask_human=can_ask_user(ctx) and bool(plan.sessions))


async def _still_there(
    ctx: ToolContext, app: AppContext, plan: MatchingPlan, flt: SessionFilter, previewed: frozenset[int]
) -> MatchingPlan:
    """Of the previewed sessions, those that exist now (the filter scanned again, the rest looked up)."""
    scan = await scan_sessions(ctx, flt)
    now = {session.id: session for session in scan.sessions}
    present = [now[i] for i in sorted(previewed, reverse=True) if i in now]
    unseen = tuple(sorted(i for i in previewed if i not in now))
    found, vanished = await look_up(ctx, app, unseen) if unseen else ((), ())
    return replace(
        plan,
        sessions=tuple(present) + found,
        vanished=vanished,
        added=len(set(now) - previewed),
    )


async def ask_matching(
    ctx: ToolContext, plan: Annotated[MatchingPlan, Resolve(plan_matching)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    if not plan.ask_human or plan.flt is None:
        return NOT_ASKED
    return question(ctx, f"{plan.summary()} matching {plan.flt.describe()}")


async def delete_message_sessions_matching(
    ctx: ToolContext,
    plan: Annotated[MatchingPlan, Resolve(plan_matching)],
    approval: Annotated[ElicitationResult[DeleteApproval], Resolve(ask_matching)],
    since: Since = None,
    until: Until = None,
    timezone: TimeZone = None,
    text: TextFilter = None,
    source: Sources = None,
    destination: Destinations = None,
    confirm: Confirm = False,
    confirmation_token: ConfirmationToken = None,
) -> Annotated[CallToolResult, MatchingDeleteResult]:
    """Delete the sessions a filter matches (since, until, text, source, destination: one at least) with all
    their messages. Not refunded; cannot be undone.

    Two calls. Without confirm nothing is deleted: the result previews what would go, with a confirmation_token
    for exactly those. Show it to the user; only after they agree, call again with confirm=true and the token.
    """
    return as_result(await _carry_out(ctx, plan, approval))


async def _carry_out(
    ctx: ToolContext, plan: MatchingPlan, approval: ElicitationResult[DeleteApproval]
) -> MatchingDeleteResult:
    app = app_context(ctx)
    client = client_name(ctx)

    def audit(outcome: Outcome, ids: list[int] | None = None, detail: str = "") -> None:
        shown = plan.ids if ids is None else ids
        where = f"filter: {plan.flt.describe()}; " if plan.flt else ""
        app.audit.record(
            tool=MATCHING,
            outcome=outcome,
            client=client,
            ids=shown[:IDS_SHOWN],
            detail=f"{where}{len(shown)} sessions; {detail}".rstrip("; "),
        )

    if plan.refusal:
        audit(plan.refusal.outcome, detail=plan.refusal.reason)
        raise ToolError(plan.refusal.reason)
    assert plan.flt is not None
    if not plan.confirm:
        result = _preview(app, plan, plan.flt)
        audit("preview" if result.confirmation_token else "nothing_to_delete")
        return result
    if not plan.sessions:
        audit("nothing_to_delete")
        return MatchingDeleteResult(
            deleted=False,
            vanished_ids=list(plan.vanished[:IDS_SHOWN]),
            message="Nothing was deleted: none of the previewed sessions exists any more.",
        )
    if plan.ask_human and not (isinstance(approval, AcceptedElicitation) and approval.data.confirm):
        cancelled = isinstance(approval, CancelledElicitation)
        audit("cancelled" if cancelled else "declined")
        how = "cancelled the confirmation" if cancelled else "did not approve the delete"
        return MatchingDeleteResult(
            deleted=False,
            message=f"Nothing was deleted: the user {how}. Do not retry unless the user asks again.",
        )
    done = await delete_in_chunks(ctx, app, plan.ids)
    outcome: Outcome = "deleted" if done.deleted else "uncertain" if done.uncertain else "failed"
    audit(outcome, ids=done.deleted, detail=done.problem or "")
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
    return MatchingDeleteResult(
        deleted=bool(done.deleted),
        deleted_count=len(done.deleted),
        deleted_ids=done.deleted[:IDS_SHOWN],
        vanished_ids=list(plan.vanished[:IDS_SHOWN]),
        uncertain_ids=done.uncertain[:IDS_SHOWN],
        message=" ".join(notes),
    )


def _preview(app: AppContext, plan: MatchingPlan, flt: SessionFilter) -> MatchingDeleteResult:
    sessions = plan.sessions
    preview = MatchingPreview(
        sessions=[brief(s) for s in sessions[:PREVIEW_LIST]],
        count=len(sessions),
        recipients=sum(s.numbers_count or 0 for s in sessions),
        price=round(sum(s.price or 0.0 for s in sessions), 4),
        filter=flt.describe(),
    )
    if not sessions:
        return MatchingDeleteResult(
            deleted=False, preview=preview, message="Nothing to delete: no session matches this filter."
        )
    issued = app.confirmations.issue(MATCHING, Target.matching(flt.digest(), plan.ids))
    app.previews.put(issued.nonce, plan.ids)
    listed = f" The first {PREVIEW_LIST} are listed." if len(sessions) > PREVIEW_LIST else ""
    partial = f" Note: the scan {plan.scan_note}." if plan.scan_note else ""
    return MatchingDeleteResult(
        deleted=False,
        preview=preview,
        confirmation_token=issued.token,
        expires_at=issued.expires_at.isoformat(),
        message=f"Nothing was deleted yet. This would delete {plan.summary()} matching {flt.describe()}, with all "
        f"their messages.{listed}{partial} Show this preview to the user; only after they agree, call "
        f"{MATCHING} again with the same filter, confirm=true and this confirmation_token.",
    )


@dataclass
class Chunked:
    deleted: list[int]
    uncertain: list[int]
    problem: str | None = None


async def delete_in_chunks(ctx: ToolContext, app: AppContext, ids: list[int]) -> Chunked:
    """Delete ``ids`` CHUNK at a time. A chunk that may or may not have been carried out is looked up, never sent
    again; a definite failure stops the rest."""
    done = Chunked(deleted=[], uncertain=[])
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        try:
            await app.textmagic.delete_sessions(chunk)
        except UncertainOutcome:
            try:
                still_there, gone = await look_up(ctx, app, tuple(chunk))
            except TextMagicError:
                done.uncertain += chunk
                done.problem = "TextMagic failed while a delete was under way; nothing more was sent."
                return done
            done.deleted += list(gone)
            if still_there:
                done.problem = (
                    f"a delete of {len(chunk)} sessions failed after it was sent; {len(still_there)} are still "
                    "there. Ask for a new preview to delete them."
                )
                return done
            continue
        except TextMagicError as exc:
            done.problem = str(exc)
            return done
        done.deleted += chunk
        await ctx.report_progress(len(done.deleted), len(ids), f"Deleted {len(done.deleted)} of {len(ids)}")
    return done
