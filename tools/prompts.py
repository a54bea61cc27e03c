"""Prompts a user can pick in their client: a delivery report, and a cleanup. Each tells the assistant which tools
answer it in the fewest calls, and, for the cleanup, that nothing goes without the user's agreement."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from tools.outcomes import EXPLAINED


def delivery_report(
    session: Annotated[str | None, Field(description="A session id (completion offers recent ones)")] = None,
    period: Annotated[
        str | None, Field(description='Or a period in words: "yesterday", "last 7 days", "November"')
    ] = None,
    timezone: Annotated[
        str | None, Field(description="The user's IANA time zone, e.g. Europe/Berlin")
    ] = None,
) -> str:
    """Report how a send-out, or every send-out of a period, went: outcomes, delivery rate, where and why
    messages failed, and which numbers."""
    if session:
        scope = f"session {session}: call get_delivery_report with id={session}"
    else:
        what = period or "the last 7 days"
        scope = (
            f"the sessions of {what}: turn it into since and until dates (ISO 8601; a date covers that whole day)"
            " and call get_delivery_report with them"
        )
    zone = f' and timezone="{timezone}"' if timezone else ""
    return (
        f'Give me a delivery report for {scope}{zone}, with group_by ["country", "reject_reason"]. '
        "Tell me how many messages were delivered, failed, rejected and are still pending, the delivery rate, "
        "the cost, the countries and reasons where messages failed, and the failed numbers it lists. "
        "If it says more failed than it lists, call get_recipients with the same arguments and outcomes "
        '["failed", "rejected"] for the whole list. One call should answer this; do not page through messages '
        f"yourself. {EXPLAINED}"
    )


def cleanup_sessions(
    description: Annotated[
        str,
        Field(description='What to remove, in words: "last week\'s test sessions", "everything before May"'),
    ],
    timezone: Annotated[
        str | None, Field(description="The user's IANA time zone, e.g. Europe/Berlin")
    ] = None,
) -> str:
    """Clean out sessions described in words, with a preview the user approves before anything is deleted."""
    zone = f' (timezone="{timezone}")' if timezone else ""
    return (
        f"I want to remove these message sessions: {description}.\n"
        "1. Turn that into filter arguments of delete_message_sessions_matching: since and until (ISO 8601 dates"
        f"{zone}), text (a word in the title, text or reference), source, destination. Use find_message_sessions "
        "first if you are unsure what matches.\n"
        "2. Call delete_message_sessions_matching with those arguments and WITHOUT confirm. That deletes nothing: "
        "it previews the sessions it would delete and gives a confirmation_token.\n"
        "3. Show me the preview: how many sessions, recipients and cost, and the sessions it lists. Ask me whether "
        "to delete them.\n"
        "4. Only if I clearly agree, call it again with the same arguments, confirm=true and the "
        "confirmation_token. If I do not agree, or change what to remove, do not confirm; start again from 1.\n"
        "Deleted sessions and their messages cannot be recovered, and are not refunded."
    )
