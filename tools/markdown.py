"""A delivery report as Markdown: for the report resource, nightly jobs and e-mail."""

from __future__ import annotations

import html

from tools.models import DeliveryReport, GroupRow
from tools.outcomes import BUCKETS, Counts


def report_markdown(report: DeliveryReport) -> str:
    lines: list[str] = []
    if report.filter is None and report.listed:
        [session] = report.listed
        lines.append(f"# Delivery report: {_cell(session.title or f'Session {session.id}')}")
        lines.append("")
        lines.append(
            f"Session {session.id}, started {session.start_time or 'unknown'}, {session.recipients or 0} recipients."
        )
    else:
        lines.append(f"# Delivery report: {report.sessions} session{'' if report.sessions == 1 else 's'}")
        lines.append("")
        lines.append(f"Sessions matching {report.filter}.")
    lines.append("")
    lines.append(
        _rate_line(report.outcome) + f" Cost {report.outcome.cost:.2f} (account currency, as billed)."
    )
    if report.deleted:
        lines += [
            "",
            f"{report.deleted.messages} deleted messages ({report.deleted.cost:.2f}) are in the cost, not in the counts.",
        ]
    if report.scheduled:
        lines += [
            "",
            f"Not started yet, in no count or cost: {report.scheduled.sessions} sessions to "
            f"{report.scheduled.recipients} recipients ({report.scheduled.cost:.2f}).",
        ]
    lines.append("")
    lines.append("| outcome | messages |")
    lines.append("| --- | ---: |")
    for outcome in BUCKETS:
        lines.append(f"| {outcome} | {getattr(report.outcome, outcome)} |")
    for name, rows in report.groups.items():
        lines += ["", f"## By {name.replace('_', ' ')}", "", *_group_table(rows)]
    if report.failed:
        lines += ["", f"## Failed and rejected ({report.failed_count})", ""]
        lines.append("| number | name | country | status | reason | session | time |")
        lines.append("| --- | --- | --- | --- | --- | ---: | --- |")
        for failed in report.failed:
            cells = (
                failed.number,
                failed.name,
                failed.country,
                failed.status,
                failed.reason,
                failed.session,
                failed.time,
            )
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    for note in (report.note, report.more, None if report.complete else report.reason):
        if note:
            lines += ["", f"_{_cell(note)}_"]
    return "\n".join(lines) + "\n"


def _rate_line(counts: Counts) -> str:
    rate = "no message is final yet" if counts.delivery_rate is None else f"{counts.delivery_rate:.1%}"
    pending = f" ({counts.pending} still pending, not counted)" if counts.pending else ""
    return f"{counts.total} messages; delivery rate {rate}{pending}."


def _group_table(rows: list[GroupRow]) -> list[str]:
    lines = ["| key | delivered | failed | rejected | pending | other | rate |", "| --- |" + " ---: |" * 6]
    for row in rows:
        rate = "" if row.delivery_rate is None else f"{row.delivery_rate:.1%}"
        counts = " | ".join(str(getattr(row, name)) for name in BUCKETS)
        lines.append(f"| {_cell(row.key or '(none)')} | {counts} | {rate} |")
    return lines


def _cell(value: object) -> str:
    """Third-party text as inert Markdown: no HTML, link, emphasis or code can be made of it, nor can it break
    out of its cell or line."""
    text = "" if value is None else html.escape(str(value), quote=False)
    text = " ".join(text.split())
    return "".join("\\" + c if c in _MARKDOWN else c for c in text)


# Characters that make emphasis, code, links or table cells of plain text: each is written escaped (and
# html.escape takes care of tags).
_MARKDOWN = frozenset("\\`*_[]|~")
