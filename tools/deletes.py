"""The delete tools by id: one session, or 1 to 100 (or all, which ``tools.cleanup`` carries out as a previewed
set). Nothing is deleted without a preview, a confirming call carrying that preview's token (once), and, where
the client can ask its user, the user's own approval (the steps are explained in ``tools.confirming``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from mcp.server.mcpserver import Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field, StrictBool

from server.state.audit import Outcome
from server.state.confirmation import Claims, ConfirmationError, Target
from server.state.context import AppContext, ToolContext, app_context, client_name
from server.state.ledger import StateUnavailable
from server.textmagic import TextMagicError, UncertainOutcome
from server.textmagic.models import MessageSession
from tools.briefs import brief
from tools.cleanup import PREVIEW_LIST, SetPlan, ask_set, carry_out_set, plan_set
from tools.confirming import (
    NOT_ASKED,
    Audited,
    Confirm,
    ConfirmationToken,
    DeleteApproval,
    Refusal,
    audited,
    can_ask_user,
    declined,
    gate,
    id_list,
    look_up,
    question,
    sessions_phrase,
    still_unused,
    unused,
    use_up,
)
from tools.models import MAX_BULK_IDS, DeletePreview, DeleteResult, IdValue, SessionId
from tools.render import as_result

SINGLE = "delete_message_session"
BULK = "delete_message_sessions_bulk"

BulkIds = Annotated[
    list[IdValue] | None,
    Field(min_length=1, max_length=MAX_BULK_IDS, description="Sessions to delete; not with all"),
]
DeleteAll = Annotated[
    StrictBool,
    Field(description="EVERY session of the account; needs TEXTMAGIC_ALLOW_DELETE_ALL=true on the server"),
]


@dataclass(frozen=True)
class DeletePlan:
    """What one delete call asks for and what exists, worked out before anything is deleted."""

    tool: str
    confirm: bool
    delete_all: bool = False
    requested: tuple[int, ...] = ()
    sessions: tuple[MessageSession, ...] = ()
    missing: tuple[int, ...] = ()
    claims: Claims | None = None
    refusal: Refusal | None = None
    ask_human: bool = False
    # all=true: every session, as a previewed set.
    everything: SetPlan | None = None

    @property
    def present_ids(self) -> list[int]:
        return [session.id for session in self.sessions]

    def preview(self) -> DeletePreview:
        return DeletePreview(
            sessions=[brief(s) for s in self.sessions],
            ids=self.present_ids,
            missing_ids=list(self.missing),
            total_numbers_count=sum(s.numbers_count or 0 for s in self.sessions),
            total_price=round(sum(s.price or 0.0 for s in self.sessions), 4),
        )

    def summary(self) -> str:
        preview = self.preview()
        return (
            f"{sessions_phrase(len(self.sessions))} ({preview.total_numbers_count} recipients, "
            f"{preview.total_price:.2f} in account currency)"
        )


async def plan_single(ctx: ToolContext, id: int, confirm: bool, confirmation_token: str | None) -> DeletePlan:
    return await _plan(ctx, DeletePlan(tool=SINGLE, confirm=confirm, requested=(id,)), confirmation_token)


async def plan_bulk(
    ctx: ToolContext, ids: list[int] | None, all: bool, confirm: bool, confirmation_token: str | None
) -> DeletePlan:
    plan = DeletePlan(tool=BULK, confirm=confirm, delete_all=all, requested=tuple(sorted(set(ids or ()))))
    if ids and all:
        return replace(plan, refusal=Refusal("refused", "Pass either ids or all=true, not both."))
    if not ids and not all:
        return replace(plan, refusal=Refusal("refused", "Pass ids (1 to 100 session ids) or all=true."))
    if all:
        if not app_context(ctx).settings.allow_delete_all:
            return replace(plan, refusal=Refusal("refused", DELETE_ALL_DISABLED))
        return replace(plan, everything=await plan_set(ctx, BULK, None, confirm, confirmation_token))
    return await _plan(ctx, plan, confirmation_token)


async def ask_single(
    ctx: ToolContext, plan: Annotated[DeletePlan, Resolve(plan_single)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    return _question(ctx, plan)


async def ask_bulk(
    ctx: ToolContext, plan: Annotated[DeletePlan, Resolve(plan_bulk)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    return ask_set(ctx, plan.everything) if plan.everything else _question(ctx, plan)


async def delete_message_session(
    id: SessionId,
    ctx: ToolContext,
    plan: Annotated[DeletePlan, Resolve(plan_single)],
    approval: Annotated[ElicitationResult[DeleteApproval], Resolve(ask_single)],
    confirm: Confirm = False,
    confirmation_token: ConfirmationToken = None,
) -> Annotated[CallToolResult, DeleteResult]:
    """Delete one session and all its messages. Not refunded; cannot be undone.

    Two calls. Without confirm nothing is deleted: the result previews it, with a confirmation_token. Show it to
    the user; only after they agree, call again with confirm=true and the token.
    """
    return as_result(await _carry_out(ctx, plan, approval))


async def delete_message_sessions_bulk(
    ctx: ToolContext,
    plan: Annotated[DeletePlan, Resolve(plan_bulk)],
    approval: Annotated[ElicitationResult[DeleteApproval], Resolve(ask_bulk)],
    ids: BulkIds = None,
    all: DeleteAll = False,
    confirm: Confirm = False,
    confirmation_token: ConfirmationToken = None,
) -> Annotated[CallToolResult, DeleteResult]:
    """Delete sessions by ids, or every session (all=true), with all their messages. Not refunded; cannot be
    undone.

    Two calls. Without confirm nothing is deleted: the result previews what would go, with a confirmation_token.
    Show it to the user; only after they agree, call again with the ids it lists, confirm=true and the token.
    """
    if plan.everything is not None:
        return as_result(await _carry_out_all(ctx, plan.everything, approval))
    return as_result(await _carry_out(ctx, plan, approval))


async def _plan(ctx: ToolContext, plan: DeletePlan, token: str | None) -> DeletePlan:
    app = app_context(ctx)
    if refusal := gate(ctx, plan.confirm, token):
        return replace(plan, refusal=refusal)
    try:
        if plan.confirm and token:
            # Checked before any look-up: a forged, stale or spent token costs TextMagic nothing.
            claims = app.confirmations.verify(token, plan.tool, Target.of_ids(plan.requested))
            if refusal := await unused(app, claims):
                return replace(plan, refusal=refusal)
            plan = replace(plan, claims=claims)
        sessions, missing = await look_up(ctx, app, plan.requested)
        plan = replace(plan, sessions=sessions, missing=missing)
    except ConfirmationError as exc:
        return replace(plan, refusal=Refusal("refused", f"Nothing was deleted. {exc}"))
    except (TextMagicError, StateUnavailable) as exc:
        return replace(plan, refusal=Refusal("failed", f"Nothing was deleted. {exc}"))
    return replace(plan, ask_human=plan.confirm and can_ask_user(ctx) and bool(plan.sessions))


def _question(ctx: ToolContext, plan: DeletePlan) -> Elicit[DeleteApproval] | DeleteApproval:
    return question(ctx, plan.summary(), plan.sessions) if plan.ask_human else NOT_ASKED


async def _carry_out(
    ctx: ToolContext, plan: DeletePlan, approval: ElicitationResult[DeleteApproval]
) -> DeleteResult:
    app = app_context(ctx)
    client = client_name(ctx)

    def audit(outcome: Outcome, detail: str = "") -> None:
        app.audit.record(
            tool=plan.tool,
            outcome=outcome,
            client=client,
            ids=plan.requested,
            delete_all=plan.delete_all,
            detail=detail,
        )

    if plan.refusal:
        audit(plan.refusal.outcome, plan.refusal.reason)
        raise ToolError(plan.refusal.reason)
    if not plan.confirm:
        result = _preview(app, plan)
        audit("preview" if result.confirmation_token else "nothing_to_delete")
        return result
    assert plan.claims is not None, "a confirmed plan holds its token's claims"
    await still_unused(app, plan.claims, audit)
    if not plan.sessions:
        audit("nothing_to_delete")
        return DeleteResult(
            deleted=False,
            not_found_ids=list(plan.missing),
            message="Nothing was deleted: none of these sessions exists any more.",
        )
    if answer := await declined(app, plan.claims, plan.ask_human, approval, audit):
        return DeleteResult(deleted=False, preview=plan.preview(), message=answer)
    await use_up(app, plan.claims, audit)
    with audited(ctx, plan.tool, plan.present_ids) as trail:
        result = await _delete(ctx, app, plan, trail)
    return result


def _preview(app: AppContext, plan: DeletePlan) -> DeleteResult:
    preview = plan.preview()
    if not plan.sessions:
        return DeleteResult(
            deleted=False, preview=preview, message="Nothing to delete: no session exists with these ids."
        )
    issued = app.confirmations.issue(plan.tool, Target.of_ids(preview.ids))
    left_out = f" Not found, left out: {id_list(plan.missing)}." if plan.missing else ""
    repeat = "the same id" if plan.tool == SINGLE else f"ids {preview.ids}"
    return DeleteResult(
        deleted=False,
        preview=preview,
        confirmation_token=issued.token,
        expires_at=issued.expires_at.isoformat(),
        message=f"Nothing was deleted yet. This would delete {plan.summary()} with all their messages."
        f"{left_out} Show this preview to the user; only after they agree, call {plan.tool} again with "
        f"{repeat}, confirm=true and this confirmation_token.",
    )


async def _delete(ctx: ToolContext, app: AppContext, plan: DeletePlan, trail: Audited) -> DeleteResult:
    """Send the delete and say what it did; ``trail`` records how it ended."""
    ids = plan.present_ids
    try:
        if plan.tool == SINGLE:
            await app.textmagic.delete_session(ids[0])
        else:
            await app.textmagic.delete_sessions(ids)
    except UncertainOutcome as failure:
        return await _check_ids_gone(ctx, app, plan, failure, trail)
    except TextMagicError as exc:
        if plan.tool != SINGLE or exc.status != 404:
            raise
        trail.record("nothing_to_delete", detail="gone before the delete ran")
        return DeleteResult(
            deleted=False,
            not_found_ids=ids,
            message=f"Session {ids[0]} no longer exists (deleted meanwhile?); nothing was deleted.",
        )
    trail.record("deleted")
    gone = f" Already gone: {id_list(plan.missing)}." if plan.missing else ""
    return DeleteResult(
        deleted=True,
        deleted_ids=ids,
        not_found_ids=list(plan.missing),
        message=f"Deleted {sessions_phrase(len(ids))} and all their messages: {id_list(ids)}.{gone}",
    )


async def _check_ids_gone(
    ctx: ToolContext, app: AppContext, plan: DeletePlan, failure: UncertainOutcome, trail: Audited
) -> DeleteResult:
    """The delete may or may not have been carried out: look, rather than guess or send it again."""
    try:
        still_there, gone = await look_up(ctx, app, tuple(plan.present_ids))
    except TextMagicError:
        trail.record("uncertain", detail=str(failure))
        return DeleteResult(
            deleted=False,
            outcome_unknown=True,
            message=f"{failure} Checking afterwards failed too, so whether the sessions were deleted is unknown. "
            "Look them up with get_message_session before anything else.",
        )
    kept = [session.id for session in still_there]
    if not gone:
        trail.record("failed", detail=f"{failure} Checked afterwards: nothing was deleted.")
        return DeleteResult(
            deleted=False,
            message=f"{failure} Checked afterwards: nothing was deleted. To try again, ask for a fresh preview.",
        )
    trail.record("deleted", ids=list(gone), detail=f"{failure} Checked afterwards.")
    rest = f" Still there: {id_list(kept)}; ask for a fresh preview to delete them." if kept else ""
    return DeleteResult(
        deleted=True,
        deleted_ids=list(gone),
        not_found_ids=list(plan.missing),
        message=f"{failure} Checked afterwards: deleted {id_list(gone)}.{rest}",
    )


async def _carry_out_all(
    ctx: ToolContext, plan: SetPlan, approval: ElicitationResult[DeleteApproval]
) -> DeleteResult:
    ended = await carry_out_set(ctx, plan, approval)
    done = ended.done
    if not plan.confirm:
        return DeleteResult(
            deleted=False,
            preview=DeletePreview(
                sessions=[brief(s) for s in plan.sessions[:PREVIEW_LIST]],
                total_numbers_count=sum(s.numbers_count or 0 for s in plan.sessions),
                total_price=round(sum(s.price or 0.0 for s in plan.sessions), 4),
                all_sessions_count=len(plan.sessions),
            ),
            confirmation_token=ended.issued.token if ended.issued else None,
            expires_at=ended.issued.expires_at.isoformat() if ended.issued else None,
            message=ended.message,
        )
    deleted = done.deleted if done else []
    return DeleteResult(
        deleted=bool(deleted),
        deleted_ids=deleted,
        deleted_all=bool(done) and not plan.added and len(deleted) == len(plan.sessions),
        not_found_ids=list(plan.vanished),
        outcome_unknown=bool(done and done.uncertain),
        message=ended.message,
    )


DELETE_ALL_DISABLED = (
    "Deleting all sessions is disabled on this server. Delete by ids instead, or ask the operator to "
    "restart the server with TEXTMAGIC_ALLOW_DELETE_ALL=true."
)
