"""Sessions said briefly, wherever a result lists them: texts cut short, outcome counts when known."""

from __future__ import annotations

from server.textmagic.models import MessageSession
from tools.models import SessionBrief, SessionPreview
from tools.outcomes import Counts

TEXT_CHARS = 80


def brief(session: MessageSession) -> SessionPreview:
    return SessionPreview(
        id=session.id,
        start_time=session.start_time,
        title=session.title,
        text=cut(session.text),
        numbers_count=session.numbers_count,
        price=session.price,
    )


def session_brief(session: MessageSession, counts: Counts | None = None) -> SessionBrief:
    outcome = counts.model_dump() if counts is not None else {}
    return SessionBrief(
        id=session.id,
        start_time=session.start_time,
        title=session.title,
        text=cut(session.text),
        source=session.source,
        destination=session.destination,
        reference_id=session.reference_id,
        numbers_count=session.numbers_count,
        price=session.price,
        **outcome,
    )


def cut(text: str | None) -> str | None:
    return text[: TEXT_CHARS - 1] + "…" if text is not None and len(text) > TEXT_CHARS else text
