"""Resources beside the tools: a session with its outcomes, its delivery report as Markdown, the failed
recipients as CSV (``tools.failures``), and completion of session ids from the recent sessions."""

from __future__ import annotations

import json

from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import Completion

from server.state.context import AppContext, ToolContext, app_context
from server.textmagic.models import MessageSession
from tools.filters import SessionQuery
from tools.finding import session_counts
from tools.markdown import report_markdown
from tools.models import MAX_ID
from tools.reports import delivery_report

SESSION_TEMPLATE = "textmagic://sessions/{id}"
REPORT_TEMPLATE = "textmagic://sessions/{id}/report"
# Recent sessions offered as completions: one page of the list.
RECENT = 100


async def session_resource(ctx: ToolContext, id: str) -> str:
    """One session as TextMagic describes it, with its outcome counts and delivery rate (JSON)."""
    session_id = _session_id(id)
    app = app_context(ctx)
    session = await app.textmagic.get_session(session_id)
    counts = (await session_counts(ctx, [session]))[session_id]
    return json.dumps(
        {**session.model_dump(mode="json", by_alias=True), "outcome": counts.model_dump(mode="json")}
    )


async def report_resource(ctx: ToolContext, id: str) -> str:
    """One session's delivery report as Markdown: outcomes, delivery rate, failures by country and reason, and
    the failed recipients."""
    report = await delivery_report(
        ctx,
        _session_id(id),
        SessionQuery(),
        ["country", "reject_reason"],
        failed_limit=100,
        include_deleted=False,
    )
    return report_markdown(report)


async def complete_session_id(app: AppContext | None, partial: str) -> Completion:
    """Ids of recent sessions whose id, start date, title or text begins with (or contains) ``partial``."""
    if app is None:
        return Completion(values=[])
    wanted = partial.strip().casefold()
    recent = (await app.textmagic.list_sessions(page=1, limit=RECENT)).resources
    values = [str(session.id) for session in recent if _matches(session, wanted)]
    return Completion(values=values, total=len(values), has_more=False)


def _matches(session: MessageSession, wanted: str) -> bool:
    if not wanted or str(session.id).startswith(wanted) or (session.start_time or "").startswith(wanted):
        return True
    return any(wanted in (text or "").casefold() for text in (session.title, session.text))


def _session_id(id: str) -> int:
    if not (id.isascii() and id.isdigit() and len(id) <= 16) or not 1 <= int(id) <= MAX_ID:
        raise ResourceNotFoundError(
            f"{id!r} is not a session id; ids are positive integers, as get_all_message_sessions lists"
        )
    return int(id)
