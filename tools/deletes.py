"""The two delete tools. Nothing is deleted without a preview first and a confirming call that carries its token."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import anyio
import anyio.abc
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult
from pydantic import Field

from server.confirmation import ConfirmationError, Target
from server.context import AppContext, ToolContext, app_context
from server.textmagic import TextMagicError
from tools.models import MAX_BULK_IDS, DeletePreview, DeleteResult, MessageSession, SessionId, SessionPreview
from tools.render import as_result

PREVIEW_TEXT_CHARS = 80
# Preview lookups run concurrently, but well below TextMagic's 50 requests/s.
PREVIEW_CONCURRENCY = 8
SINGLE = "delete_message_session"
BULK = "delete_message_sessions_bulk"

Confirm = Annotated[
    bool,
    Field(
        description="Leave false (the default) to get a preview and a confirmation_token; nothing is deleted. "
        "Set true only after the user agreed to that preview, together with its confirmation_token."
    ),
]
ConfirmationToken = Annotated[
    str | None,
    Field(
        max_length=512,
        description="The confirmation_token from the preview call; required with confirm=true.",
    ),
]
BulkIds = Annotated[
    list[SessionId] | None,
    Field(
        min_length=1,
        max_length=MAX_BULK_IDS,
        description="1 to 100 session ids to delete; order and duplicates do not matter. Not with all=true.",
    ),
]
DeleteAll = Annotated[
    bool,
    Field(
        description="Delete EVERY session of the account. Refused unless the server runs with "
        "TEXTMAGIC_ALLOW_DELETE_ALL=true. Not with ids."
    ),
]


async def delete_message_session(
    id: SessionId,
    ctx: ToolContext,
    confirm: Confirm = False,
    confirmation_token: ConfirmationToken = None,
) -> Annotated[CallToolResult, DeleteResult]:
    """Delete one message session together with all its messages. Not refunded; cannot be undone.

    Two calls. First without confirm: nothing is deleted, the result previews the session and carries a
    confirmation_token. Show that preview to the user. Only after the user agreed, call again with the same
    id, confirm=true and the confirmation_token.
    """
    app = app_context(ctx)
    if not confirm:
        return as_result(await _preview_ids(app, SINGLE, [id]))
    _verify(app, SINGLE, Target.of_ids([id]), confirmation_token)
    try:
        await app.textmagic.delete_session(id)
    except TextMagicError as exc:
        if exc.status != 404:
            raise
        return as_result(
            DeleteResult(
                deleted=False,
                not_found_ids=[id],
                message=f"Session {id} no longer exists (deleted meanwhile?); nothing was deleted.",
            )
        )
    return as_result(
        DeleteResult(deleted=True, deleted_ids=[id], message=f"Deleted session {id} and all its messages.")
    )


async def delete_message_sessions_bulk(
    ctx: ToolContext,
    ids: BulkIds = None,
    all: DeleteAll = False,
    confirm: Confirm = False,
    confirmation_token: ConfirmationToken = None,
) -> Annotated[CallToolResult, DeleteResult]:
    """Delete several message sessions (by ids), or every session (all=true), with all their messages.

    Not refunded; cannot be undone. Two calls. First without confirm: nothing is deleted, the result previews
    what would go and carries a confirmation_token. Show that preview to the user. Only after the user
    agreed, call again with the ids listed in the preview (or all=true), confirm=true and the token.
    """
    app = app_context(ctx)
    if ids and all:
        raise ToolError("Pass either ids or all=true, not both.")
    if not ids and not all:
        raise ToolError("Pass ids (1 to 100 session ids) or all=true to say what to delete.")
    if all:
        return as_result(await _delete_all(app, confirm, confirmation_token))
    unique = sorted(set(ids or ()))
    if not confirm:
        return as_result(await _preview_ids(app, BULK, unique))
    _verify(app, BULK, Target.of_ids(unique), confirmation_token)
    await app.textmagic.delete_sessions(unique)
    return as_result(
        DeleteResult(
            deleted=True,
            deleted_ids=unique,
            message=f"Deleted {_sessions(len(unique))} and all their messages: {_id_list(unique)}.",
        )
    )


async def _delete_all(app: AppContext, confirm: bool, token: str | None) -> DeleteResult:
    if not app.settings.allow_delete_all:
        raise ToolError(
            "Deleting all sessions is disabled on this server. Delete by ids instead, or ask the operator to "
            "restart the server with TEXTMAGIC_ALLOW_DELETE_ALL=true."
        )
    count = await app.textmagic.count_sessions()
    if not confirm:
        preview = DeletePreview(all_sessions_count=count)
        if count == 0:
            return DeleteResult(
                deleted=False, preview=preview, message="The account has no sessions to delete."
            )
        issued = app.confirmations.issue(BULK, Target.everything(count))
        return DeleteResult(
            deleted=False,
            preview=preview,
            confirmation_token=issued.token,
            expires_at=issued.expires_at.isoformat(),
            message=f"Nothing was deleted yet. This would delete ALL {_sessions(count)} of the account with "
            "every message. Show this to the user; only after they agree, call again with all=true, "
            "confirm=true and this confirmation_token.",
        )
    # Checked against the live count: the token is void if sessions came or went since the preview.
    _verify(app, BULK, Target.everything(count), token)
    await app.textmagic.delete_all_sessions()
    return DeleteResult(
        deleted=True, deleted_all=True, message=f"Deleted all {_sessions(count)} of the account."
    )


async def _preview_ids(app: AppContext, operation: str, ids: list[int]) -> DeleteResult:
    found: dict[int, MessageSession] = {}
    missing: list[int] = []
    failures: list[TextMagicError] = []
    limiter = anyio.CapacityLimiter(PREVIEW_CONCURRENCY)

    async def look_up(session_id: int, group: anyio.abc.TaskGroup) -> None:
        async with limiter:
            try:
                found[session_id] = await app.textmagic.get_session(session_id)
            except TextMagicError as exc:
                if exc.status == 404:
                    missing.append(session_id)
                    return
                # Kept aside rather than raised: a task group would wrap it in an ExceptionGroup and the
                # model would lose the explanation.
                failures.append(exc)
                group.cancel_scope.cancel()

    async with anyio.create_task_group() as group:
        for session_id in ids:
            group.start_soon(look_up, session_id, group)
    if failures:
        raise failures[0]

    present = [found[i] for i in ids if i in found]
    preview = DeletePreview(
        sessions=[_brief(s) for s in present],
        ids=[s.id for s in present],
        missing_ids=sorted(missing),
        total_numbers_count=sum(s.numbers_count or 0 for s in present),
        total_price=round(sum(s.price or 0.0 for s in present), 4),
    )
    if not present:
        return DeleteResult(
            deleted=False,
            preview=preview,
            message=f"Nothing to delete: no session exists with id {_id_list(missing)}.",
        )
    issued = app.confirmations.issue(operation, Target.of_ids(preview.ids))
    gone = f" Not found, left out: {_id_list(preview.missing_ids)}." if missing else ""
    with_ids = "the same id" if operation == SINGLE else f"ids {preview.ids}"
    return DeleteResult(
        deleted=False,
        preview=preview,
        confirmation_token=issued.token,
        expires_at=issued.expires_at.isoformat(),
        message=f"Nothing was deleted yet. This would delete {_sessions(len(present))} "
        f"({preview.total_numbers_count} recipients, {preview.total_price:.2f} in account currency) with all "
        f"their messages.{gone} Show this preview to the user; only after they agree, call {operation} again "
        f"with {with_ids}, confirm=true and this confirmation_token.",
    )


def _verify(app: AppContext, operation: str, target: Target, token: str | None) -> None:
    if not token:
        raise ToolError(
            "confirm=true needs the confirmation_token from a preview. Call again without confirm to get a "
            "preview and a token, and show the preview to the user first. Nothing was deleted."
        )
    try:
        app.confirmations.verify(token, operation, target)
    except ConfirmationError as exc:
        raise ToolError(f"Nothing was deleted. {exc}") from None


def _brief(session: MessageSession) -> SessionPreview:
    text = session.text
    if text is not None and len(text) > PREVIEW_TEXT_CHARS:
        text = text[: PREVIEW_TEXT_CHARS - 1] + "…"
    return SessionPreview(
        id=session.id,
        start_time=session.start_time,
        text=text,
        numbers_count=session.numbers_count,
        price=session.price,
    )


def _sessions(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def _id_list(ids: Iterable[int]) -> str:
    return ", ".join(str(i) for i in ids)
