"""The delete tools by id: one session, or 1 to 100 (or all). Nothing is deleted without a preview, a confirming
call carrying that preview's token, and, where the client can ask its user, the user's own approval (the
steps are explained in ``tools.confirming``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Annotated

from mcp.server.mcpserver import AcceptedElicitation, CancelledElicitation, Elicit, ElicitationResult, Resolve
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field

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
    id_list,
    look_up,
    question,
    sessions_phrase,
)
from tools.models import MAX_BULK_IDS, DeletePreview, DeleteResult, IdValue, SessionId
from tools.render import as_result

SINGLE = "delete_message_session"
BULK = "delete_message_sessions_bulk"

BulkIds = Annotated[
    list[IdValue] | None,
    Field(
        min_length=1,
        max_length=MAX_BULK_IDS,
        description="Sessions to delete; not with all",
    ),
]
DeleteAll = Annotated[
    bool,
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
    all_count: int | None = None
    refusal: Refusal | None = None
    ask_human: bool = False

    @property
    def present_ids(self) -> list[int]:
        return [session.id for session in self.sessions]

    @property
    def nothing_to_delete(self) -> bool:
        return self.all_count == 0 if self.delete_all else not self.sessions

    @property
    def total_numbers_count(self) -> int:
        return sum(s.numbers_count or 0 for s in self.sessions)

    @property
    def total_price(self) -> float:
        return round(sum(s.price or 0.0 for s in self.sessions), 4)

    def preview(self) -> DeletePreview:
        if self.delete_all:
            return DeletePreview(all_sessions_count=self.all_count)
        return DeletePreview(
            sessions=[brief(s) for s in self.sessions],
            ids=self.present_ids,
            missing_ids=list(self.missing),
            total_numbers_count=self.total_numbers_count,
            total_price=self.total_price,
        )

    def summary(self) -> str:
        if self.delete_all:
            return f"ALL {sessions_phrase(self.all_count or 0)} of the account"
        return (
            f"{sessions_phrase(len(self.sessions))} ({self.total_numbers_count} recipients, "
            f"{self.total_price:.2f} in account currency)"
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
    return await _plan(ctx, plan, confirmation_token)


async def ask_single(
    ctx: ToolContext, plan: Annotated[DeletePlan, Resolve(plan_single)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    return _question(ctx, plan)


async def ask_bulk(
    ctx: ToolContext, plan: Annotated[DeletePlan, Resolve(plan_bulk)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    return _question(ctx, plan)


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
    return as_result(await _carry_out(ctx, plan, approval))


async def _plan(ctx: ToolContext, plan: DeletePlan, token: str | None) -> DeletePlan:
    app = app_context(ctx)
    if refusal := gate(ctx, plan.confirm, token):
        return replace(plan, refusal=refusal)
    if plan.delete_all and not app.settings.allow_delete_all:
        return replace(plan, refusal=Refusal("refused", DELETE_ALL_DISABLED))
    try:
        if plan.confirm and token and not plan.delete_all:
            # Checked before any look-up: a forged or stale token costs TextMagic nothing.
            app.confirmations.verify(token, plan.tool, Target.of_ids(plan.requested))
        if plan.delete_all:
            plan = replace(plan, all_count=await app.textmagic.count_sessions())
            if plan.confirm and token:
                # Against the live count: the token is void if sessions came or went since the preview.
                app.confirmations.verify(token, plan.tool, Target.everything(plan.all_count or 0))
        else:
            sessions, missing = await look_up(ctx, app, plan.requested)
            plan = replace(plan, sessions=sessions, missing=missing)
    except ConfirmationError as exc:
        return replace(plan, refusal=Refusal("refused", f"Nothing was deleted. {exc}"))
    except TextMagicError as exc:
        return replace(plan, refusal=Refusal("failed", f"Nothing was deleted. {exc}"))
    return replace(plan, ask_human=plan.confirm and can_ask_user(ctx) and not plan.nothing_to_delete)


def _question(ctx: ToolContext, plan: DeletePlan) -> Elicit[DeleteApproval] | DeleteApproval:
    return question(ctx, plan.summary()) if plan.ask_human else NOT_ASKED


async def _carry_out(
    ctx: ToolContext, plan: DeletePlan, approval: ElicitationResult[DeleteApproval]
) -> DeleteResult:
    app = app_context(ctx)
    client = client_name(ctx)

    def audit(outcome: Outcome, ids: tuple[int, ...] | list[int] = plan.requested, detail: str = "") -> None:
        app.audit.record(
            tool=plan.tool,
            outcome=outcome,
            client=client,
            ids=ids,
            delete_all=plan.delete_all,
            all_sessions_count=plan.all_count,
            detail=detail,
        )

    if plan.refusal:
        audit(plan.refusal.outcome, detail=plan.refusal.reason)
        raise ToolError(plan.refusal.reason)
    if not plan.confirm:
        result = _preview(app, plan)
        audit("preview" if result.confirmation_token else "nothing_to_delete")
        return result
    if plan.nothing_to_delete:
        audit("nothing_to_delete")
        return DeleteResult(
            deleted=False,
            not_found_ids=list(plan.missing),
            message="Nothing was deleted: none of these sessions exists any more.",
        )
    if plan.ask_human and not (isinstance(approval, AcceptedElicitation) and approval.data.confirm):
        cancelled = isinstance(approval, CancelledElicitation)
        audit("cancelled" if cancelled else "declined")
        how = "cancelled the confirmation" if cancelled else "did not approve the delete"
        return DeleteResult(
            deleted=False,
            preview=plan.preview(),
            message=f"Nothing was deleted: the user {how}. Do not retry unless the user asks again.",
        )
    try:
        result, outcome = await _delete(ctx, app, plan)
    except TextMagicError as exc:
        audit("failed", detail=str(exc))
        raise
    audit(
        outcome,
        ids=result.deleted_ids or plan.requested,
        detail="" if outcome == "deleted" else result.message,
    )
    return result


def _preview(app: AppContext, plan: DeletePlan) -> DeleteResult:
    preview = plan.preview()
    if plan.nothing_to_delete:
        what = "The account has no sessions" if plan.delete_all else "No session exists with these ids"
        return DeleteResult(deleted=False, preview=preview, message=f"Nothing to delete: {what}.")
    target = Target.everything(plan.all_count or 0) if plan.delete_all else Target.of_ids(preview.ids)
    issued = app.confirmations.issue(plan.tool, target)
    left_out = f" Not found, left out: {id_list(plan.missing)}." if plan.missing else ""
    repeat = "all=true" if plan.delete_all else "the same id" if plan.tool == SINGLE else f"ids {preview.ids}"
    return DeleteResult(
        deleted=False,
        preview=preview,
        confirmation_token=issued.token,
        expires_at=issued.expires_at.isoformat(),
        message=f"Nothing was deleted yet. This would delete {plan.summary()} with all their messages."
        f"{left_out} Show this preview to the user; only after they agree, call {plan.tool} again with "
        f"{repeat}, confirm=true and this confirmation_token.",
    )


async def _delete(ctx: ToolContext, app: AppContext, plan: DeletePlan) -> tuple[DeleteResult, Outcome]:
    if plan.delete_all:
        try:
            await app.textmagic.delete_all_sessions()
        except UncertainOutcome as exc:
            return await _check_all_gone(app, plan, exc)
        return DeleteResult(deleted=True, deleted_all=True, message=f"Deleted {plan.summary()}."), "deleted"
    ids = plan.present_ids
    if plan.tool == SINGLE:
        try:
            await app.textmagic.delete_session(ids[0])
        except TextMagicError as exc:
            if exc.status != 404:
                raise
            result = DeleteResult(
                deleted=False,
                not_found_ids=ids,
                message=f"Session {ids[0]} no longer exists (deleted meanwhile?); nothing was deleted.",
            )
            return result, "nothing_to_delete"
    else:
        try:
            await app.textmagic.delete_sessions(ids)
        except UncertainOutcome as exc:
            return await _check_ids_gone(ctx, app, plan, exc)
    gone = f" Already gone: {id_list(plan.missing)}." if plan.missing else ""
    result = DeleteResult(
        deleted=True,
        deleted_ids=ids,
        not_found_ids=list(plan.missing),
        message=f"Deleted {sessions_phrase(len(ids))} and all their messages: {id_list(ids)}.{gone}",
    )
    return result, "deleted"


async def _check_ids_gone(
    ctx: ToolContext, app: AppContext, plan: DeletePlan, failure: UncertainOutcome
) -> tuple[DeleteResult, Outcome]:
    """The bulk request may or may not have been carried out: look, rather than guess or send it again."""
    try:
        still_there, gone = await look_up(ctx, app, tuple(plan.present_ids))
    except TextMagicError:
        return _unknown(failure), "uncertain"
    kept = [session.id for session in still_there]
    if not gone:
        message = f"{failure} Checked afterwards: nothing was deleted. Confirming again with the same token is safe."
        return DeleteResult(deleted=False, message=message), "failed"
    rest = f" Still there: {id_list(kept)}; confirm again with the same token to delete them." if kept else ""
    message = f"{failure} Checked afterwards: deleted {id_list(gone)}.{rest}"
    return DeleteResult(
        deleted=True, deleted_ids=list(gone), not_found_ids=list(plan.missing), message=message
    ), "deleted"


async def _check_all_gone(
    app: AppContext, plan: DeletePlan, failure: UncertainOutcome
) -> tuple[DeleteResult, Outcome]:
    try:
        left = await app.textmagic.count_sessions()
    except TextMagicError:
        return _unknown(failure), "uncertain"
    if left == 0:
        return DeleteResult(
            deleted=True, deleted_all=True, message=f"{failure} Checked afterwards: all deleted."
        ), "deleted"
    message = (
        f"{failure} Checked afterwards: {sessions_phrase(left)} still on the account; ask for a new preview."
    )
    return DeleteResult(deleted=False, message=message), "failed"


def _unknown(failure: UncertainOutcome) -> DeleteResult:
    return DeleteResult(
        deleted=False,
        outcome_unknown=True,
        message=f"{failure} Checking afterwards failed too, so whether the sessions were deleted is unknown. "
        "Look them up with get_message_session before confirming again.",
    )


DELETE_ALL_DISABLED = (
    "Deleting all sessions is disabled on this server. Delete by ids instead, or ask the operator to "
    "restart the server with TEXTMAGIC_ALLOW_DELETE_ALL=true."
)
