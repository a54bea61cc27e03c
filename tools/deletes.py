"""The three delete tools: one session by id, 1 to 100 by ids (or all), and the sessions a filter matches. They
differ only in how they choose the set; previewing, confirming, deleting and reporting are the one flow of
``tools.deleting``, where the steps are explained.
"""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Elicit, ElicitationResult, Resolve
from mcp_types import CallToolResult
from pydantic import Field, StrictBool

from server.state.context import ToolContext, app_context
from tools.deleting import (
    Confirm,
    ConfirmationToken,
    DeleteApproval,
    DeletePlan,
    ask,
    carry_out,
    plan_delete,
    refused,
)
from tools.filters import NARROWING_NAMES, SessionQuery, with_filter
from tools.models import MAX_BULK_IDS, DeleteResult, IdValue, SessionId
from tools.render import as_result

SINGLE = "delete_message_session"
BULK = "delete_message_sessions_bulk"
MATCHING = "delete_message_sessions_matching"

BulkIds = Annotated[
    list[IdValue] | None,
    Field(min_length=1, max_length=MAX_BULK_IDS, description="Sessions to delete; not with all"),
]
DeleteAll = Annotated[
    StrictBool,
    Field(description="EVERY session of the account; needs TEXTMAGIC_ALLOW_DELETE_ALL=true on the server"),
]


async def plan_single(ctx: ToolContext, id: int, confirm: bool, confirmation_token: str | None) -> DeletePlan:
    return await plan_delete(ctx, SINGLE, "id", confirm, confirmation_token, ids=[id])


async def plan_bulk(
    ctx: ToolContext, ids: list[int] | None, all: bool, confirm: bool, confirmation_token: str | None
) -> DeletePlan:
    if ids and all:
        return refused(BULK, confirm, "ids", "Pass either ids or all=true, not both.")
    if not ids and not all:
        return refused(BULK, confirm, "ids", "Pass ids (1 to 100 session ids) or all=true.")
    if all and not app_context(ctx).settings.allow_delete_all:
        return refused(BULK, confirm, "all", DELETE_ALL_DISABLED)
    if all:
        return await plan_delete(ctx, BULK, "all", confirm, confirmation_token)
    return await plan_delete(ctx, BULK, "ids", confirm, confirmation_token, ids=ids or [])


@with_filter
async def plan_matching(
    ctx: ToolContext, *, query: SessionQuery, confirm: bool, confirmation_token: str | None
) -> DeletePlan:
    if not query.narrows:
        return refused(MATCHING, confirm, "filter", NO_FILTER)
    return await plan_delete(ctx, MATCHING, "filter", confirm, confirmation_token, query=query)


async def ask_single(
    ctx: ToolContext, plan: Annotated[DeletePlan, Resolve(plan_single)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    return ask(ctx, plan)


async def ask_bulk(
    ctx: ToolContext, plan: Annotated[DeletePlan, Resolve(plan_bulk)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    return ask(ctx, plan)


async def ask_matching(
    ctx: ToolContext, plan: Annotated[DeletePlan, Resolve(plan_matching)]
) -> Elicit[DeleteApproval] | DeleteApproval:
    return ask(ctx, plan)


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
    return as_result(await carry_out(ctx, plan, approval))


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
    return as_result(await carry_out(ctx, plan, approval))


@with_filter
async def delete_message_sessions_matching(
    ctx: ToolContext,
    plan: Annotated[DeletePlan, Resolve(plan_matching)],
    approval: Annotated[ElicitationResult[DeleteApproval], Resolve(ask_matching)],
    *,
    query: SessionQuery,
    confirm: Confirm = False,
    confirmation_token: ConfirmationToken = None,
) -> Annotated[CallToolResult, DeleteResult]:
    """Delete the sessions a filter matches (since, until, text, source, destination: one at least) with all
    their messages. Not refunded; cannot be undone.

    Two calls. Without confirm nothing is deleted: the result previews what would go, with a confirmation_token
    for exactly those. Show it to the user; only after they agree, call again with confirm=true and the token.
    """
    return as_result(await carry_out(ctx, plan, approval))


DELETE_ALL_DISABLED = (
    "Deleting all sessions is disabled on this server. Delete by ids instead, or ask the operator to "
    "restart the server with TEXTMAGIC_ALLOW_DELETE_ALL=true."
)
NO_FILTER = (
    f"Nothing was deleted. {MATCHING} needs at least one of {NARROWING_NAMES}. To delete every session, use "
    f"{BULK} with all=true (which the server allows only with TEXTMAGIC_ALLOW_DELETE_ALL=true)."
)
