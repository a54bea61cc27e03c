"""The delete flow, once for the three delete tools: a set of sessions, however it was chosen (one id, a list of
ids, a filter, all), previewed; confirmed once with the preview's token and, where the client can ask, by its
user; then deleted, audited and reported in one result model.

A delete call runs in three steps. A *plan* resolver works out what the call asks for and what exists
(validation, token check, look-ups); an *ask* resolver turns a confirmed plan into a question for the user when
the client can ask one; the tool body (``carry_out``) then previews, refuses or deletes, and writes the audit
records. The resolvers run again on the round that brings the user's answer (2026-07-28), so they only read; the
body claims the token, so that a confirmation deletes once however often it is sent.

A set chosen by ids (at most 100) is named by its token. A set chosen by a filter, or all, may hold thousands:
the preview keeps it (``server.state.previews``) under the token's nonce and the token carries its digest, so
the confirmation deletes exactly what was shown, and a session created or matched after the preview survives.
Deletion goes in chunks of at most 100 ids through the bulk endpoint, never ``all: 1`` (one session through
its own endpoint); a chunk whose outcome is uncertain is looked up, never sent again.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal, NoReturn, Protocol

import anyio
from mcp.server.mcpserver import AcceptedElicitation, CancelledElicitation, Elicit, ElicitationResult
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field, StrictBool

from server.observability import metrics
from server.state.audit import Outcome, new_operation
from server.state.caller import caller
from server.state.confirmation import Claims, ConfirmationError, Target
from server.state.context import AppContext, ToolContext, app_context, client_name
from server.state.ledger import StateUnavailable
from server.state.previews import Shown
from server.textmagic import TextMagicError, UncertainOutcome
from server.textmagic.models import MessageSession
from tools.filters import SessionFilter, SessionQuery
from tools.models import DeletePreview, DeleteResult, SessionLine
from tools.scan import gather, scan_sessions

# How a tool chose its set: one id, a list of ids, a filter, every session.
Choice = Literal["id", "ids", "filter", "all"]
CHUNK = 100
# Sessions a preview of a filter (or all) lists in full, and ids a result lists; the rest are counted.
PREVIEW_LIST = 20
IDS_LISTED = 100
# Sessions the person's form names one by one; the rest are counted.
NAMED = 10

# Strict: only JSON true deletes; "yes", 1 or "true" are refused, not read as true.
Confirm = Annotated[
    StrictBool,
    Field(description="True only after the user agreed to the preview, with its confirmation_token"),
]
ConfirmationToken = Annotated[str | None, Field(max_length=512, description="From the preview")]


class DeleteApproval(BaseModel):
    """The form the user sees before a confirmed delete."""

    confirm: StrictBool = Field(
        title="Delete permanently",
        description="Yes, delete these sessions and all their messages. This cannot be undone.",
    )


# What the approval resolver yields when nobody is asked; the body then never reads it.
NOT_ASKED = DeleteApproval(confirm=False)


@dataclass(frozen=True)
class Refusal:
    outcome: Literal["refused", "failed"]
    reason: str


@dataclass(frozen=True)
class DeletePlan:
    """What one delete call asks for and what exists, worked out before anything is deleted."""

    tool: str
    confirm: bool
    choice: Choice
    # The ids asked for (by id), sorted and once each.
    requested: tuple[int, ...] = ()
    # The filter (for all, the one that matches everything).
    flt: SessionFilter | None = None
    # The preview: what would go. The confirmation: what is still there of what the preview showed.
    sessions: tuple[MessageSession, ...] = ()
    # Asked for, or previewed, and gone.
    not_found: tuple[int, ...] = ()
    # Sessions the filter matches now that the preview did not show: left alone.
    added: int = 0
    # Previewed ids that now name another session (another start time): left alone.
    changed: tuple[int, ...] = ()
    scan_note: str | None = None
    claims: Claims | None = None
    refusal: Refusal | None = None
    ask_human: bool = False

    @property
    def by_ids(self) -> bool:
        return self.choice in ("id", "ids")

    @property
    def ids(self) -> list[int]:
        return [session.id for session in self.sessions]

    def target(self) -> Target:
        """What the preview's token is bound to: the ids it shows, and for a filter the filter too."""
        if self.by_ids:
            return Target.of_ids(self.ids)
        assert self.flt is not None, "a set chosen by filter has one"
        return Target.matching(self.flt.digest(), self.ids)

    def summary(self) -> str:
        recipients = sum(s.numbers_count or 0 for s in self.sessions)
        price = sum(s.price or 0.0 for s in self.sessions)
        what = sessions_phrase(len(self.sessions))
        if self.choice == "all":
            what = f"ALL {what} of the account"
        elif self.choice == "filter" and self.flt is not None:
            what = f"{what} matching {self.flt.describe()}"
        return f"{what} ({recipients} recipients, {price:.2f} in account currency)"

    def preview(self) -> DeletePreview:
        listed = self.sessions if self.by_ids else self.sessions[:PREVIEW_LIST]
        return DeletePreview(
            sessions=[SessionLine.of(s) for s in listed],
            ids=self.ids if self.by_ids else [],
            count=len(self.sessions),
            recipients=sum(s.numbers_count or 0 for s in self.sessions),
            price=round(sum(s.price or 0.0 for s in self.sessions), 4),
            filter=None if self.by_ids or self.flt is None else self.flt.describe(),
        )


def refused(tool: str, confirm: bool, choice: Choice, reason: str) -> DeletePlan:
    """A plan refused for how the call chose its set (say ids and all together)."""
    return DeletePlan(tool=tool, confirm=confirm, choice=choice, refusal=Refusal("refused", reason))


async def plan_delete(
    ctx: ToolContext,
    tool: str,
    choice: Choice,
    confirm: bool,
    token: str | None,
    *,
    ids: Sequence[int] = (),
    query: SessionQuery | None = None,
) -> DeletePlan:
    """The plan of a call that chose its set by ``ids`` (id, ids) or by ``query`` (filter; None for all)."""
    app = app_context(ctx)
    plan = DeletePlan(tool=tool, confirm=confirm, choice=choice, requested=tuple(sorted(set(ids))))
    if refusal := gate(ctx, confirm, token):
        return replace(plan, refusal=refusal)
    try:
        if plan.by_ids:
            return await _plan_ids(ctx, app, plan, token)
        zone = app.settings.timezone
        flt = SessionFilter.of(query, zone) if query else SessionFilter.everything_in(zone)
        return await _plan_set(ctx, app, replace(plan, flt=flt), token)
    except (ConfirmationError, ToolError) as exc:
        return replace(plan, refusal=Refusal("refused", f"Nothing was deleted. {exc}"))
    except (TextMagicError, StateUnavailable) as exc:
        return replace(plan, refusal=Refusal("failed", f"Nothing was deleted. {exc}"))


async def _plan_ids(ctx: ToolContext, app: AppContext, plan: DeletePlan, token: str | None) -> DeletePlan:
    claims = None
    if plan.confirm and token:
        # Checked before any look-up: a forged, stale or spent token costs TextMagic nothing.
        claims = app.confirmations.verify(token, plan.tool, Target.of_ids(plan.requested), caller().subject)
        if refusal := await unused(app, claims):
            return replace(plan, refusal=refusal)
    sessions, missing = await look_up(ctx, app, plan.requested)
    changed: tuple[int, ...] = ()
    if claims is not None:
        # The token names the ids; what the preview showed of them is checked where it is known (another
        # replica's preview is, through Redis). Without it the ids alone still bind the confirmation.
        previewed = await app.previews.get(claims.nonce)
        if previewed is not None:
            sessions, changed = _as_previewed(sessions, previewed)
    ask = plan.confirm and can_ask_user(ctx) and bool(sessions)
    return replace(plan, sessions=sessions, not_found=missing, changed=changed, claims=claims, ask_human=ask)


def _as_previewed(
    sessions: tuple[MessageSession, ...], previewed: Shown
) -> tuple[tuple[MessageSession, ...], tuple[int, ...]]:
    """Of ``sessions``, those still as the preview showed them; and the ids that now name another session (its
    start time differs), which are left alone."""
    same = tuple(s for s in sessions if previewed.get(s.id) == (s.start_time or ""))
    return same, tuple(sorted(s.id for s in sessions if previewed.get(s.id) != (s.start_time or "")))


async def _plan_set(ctx: ToolContext, app: AppContext, plan: DeletePlan, token: str | None) -> DeletePlan:
    assert plan.flt is not None
    if not plan.confirm:
        scan = await scan_sessions(ctx, plan.flt)
        if plan.choice == "all" and not scan.complete:
            # "All" must mean all: a preview that could not see every session cannot offer to delete them.
            return replace(plan, refusal=Refusal("refused", ALL_UNSEEN.format(seen=scan.scanned)))
        return replace(plan, sessions=tuple(scan.sessions), scan_note=scan.reason)
    assert token is not None, "gate() refuses a confirmation without its token"
    claims = app.confirmations.open(token, plan.tool, caller().subject)
    if refusal := await unused(app, claims):
        return replace(plan, refusal=refusal)
    previewed = await app.previews.get(claims.nonce)
    if previewed is None:
        return replace(plan, refusal=Refusal("refused", PREVIEW_UNKNOWN))
    app.confirmations.verify(
        token, plan.tool, Target.matching(plan.flt.digest(), previewed), caller().subject
    )
    standing = await still_there(ctx, app, plan.flt, frozenset(previewed))
    sessions, changed = _as_previewed(standing.present, previewed)
    return replace(
        plan,
        sessions=sessions,
        not_found=standing.vanished,
        changed=changed,
        added=standing.added,
        claims=claims,
        ask_human=can_ask_user(ctx) and bool(sessions),
    )


def ask(ctx: ToolContext, plan: DeletePlan) -> Elicit[DeleteApproval] | DeleteApproval:
    """The question for the user before a confirmed delete, when there is one to ask."""
    if not plan.ask_human:
        return NOT_ASKED
    where = "[SANDBOX, made-up data] " if app_context(ctx).settings.sandbox else ""
    named = "; ".join(_named(session) for session in plan.sessions[:NAMED])
    rest = f"; and {sessions_phrase(len(plan.sessions) - NAMED)} more" if len(plan.sessions) > NAMED else ""
    return Elicit(
        f"{where}Delete {plan.summary()}? {named}{rest}. Their messages go too; this cannot be undone.",
        DeleteApproval,
    )


async def carry_out(
    ctx: ToolContext, plan: DeletePlan, approval: ElicitationResult[DeleteApproval]
) -> DeleteResult:
    """Refuse, preview, or delete what ``plan`` holds, with its audit records."""
    app = app_context(ctx)
    audit = _auditor(ctx, app, plan)
    if plan.refusal:
        _refuse(plan, plan.refusal, audit)
    if not plan.confirm:
        return await _preview(app, plan, audit)
    assert plan.claims is not None, "a confirmed plan holds its token's claims"
    # Again in the body: a concurrent confirmation with the same token may have used it since the plan was made.
    if refusal := await unused(app, plan.claims):
        _refuse(plan, refusal, audit)
    if not plan.sessions:
        audit("nothing_to_delete")
        which = "these" if plan.by_ids else "the previewed"
        return DeleteResult(
            deleted=False,
            not_found_ids=list(plan.not_found[:IDS_LISTED]),
            message=f"Nothing was deleted: none of {which} sessions exists any more.",
        )
    if answer := await _declined(app, plan.claims, plan.ask_human, approval, audit):
        return DeleteResult(deleted=False, preview=plan.preview(), message=answer)
    if refusal := await claim(app, plan.claims):
        _refuse(plan, refusal, audit)
    with audited(ctx, app, plan) as trail:
        done = await delete_in_chunks(ctx, app, plan)
        metrics.SESSIONS_DELETED.inc(len(done.deleted))
        trail.record(
            done.outcome, done.deleted or done.uncertain or done.gone or plan.ids, done.problem or ""
        )
    return _result(plan, done)


async def _preview(app: AppContext, plan: DeletePlan, audit: Audit) -> DeleteResult:
    if not plan.sessions:
        audit("nothing_to_delete")
        what = {
            "all": "The account has no sessions",
            "filter": "No session matches this filter",
        }.get(plan.choice, "no session exists with these ids")
        return DeleteResult(
            deleted=False,
            preview=plan.preview(),
            not_found_ids=list(plan.not_found[:IDS_LISTED]),
            message=f"Nothing to delete: {what}.",
        )
    try:
        issued = app.confirmations.issue(plan.tool, plan.target(), caller().subject, await app.ledger.epoch())
        await app.previews.put(issued.nonce, {s.id: s.start_time or "" for s in plan.sessions})
    except StateUnavailable as exc:
        # A preview whose set cannot be kept could never be confirmed: refused now, not after the person agreed.
        reason = f"{PREVIEWS_DOWN} ({exc})"
        audit("failed", reason)
        raise ToolError(reason) from None
    audit("preview")
    notes = []
    if plan.not_found:
        notes.append(f"Not found, left out: {id_list(plan.not_found)}.")
    if len(plan.sessions) > PREVIEW_LIST and not plan.by_ids:
        notes.append(f"The first {PREVIEW_LIST} are listed.")
    if plan.scan_note:
        notes.append(f"Note: the scan {plan.scan_note}.")
    again = {
        "id": "the same id",
        "ids": f"ids {plan.ids}",
        "all": "all=true",
        "filter": "the same filter",
    }[plan.choice]
    after = "" if plan.by_ids else " Sessions that appear after this preview are not deleted by it."
    return DeleteResult(
        deleted=False,
        preview=plan.preview(),
        not_found_ids=list(plan.not_found[:IDS_LISTED]),
        confirmation_token=issued.token,
        expires_at=issued.expires_at.isoformat(),
        message=f"Nothing was deleted yet. This would delete {plan.summary()}, with all their messages. "
        + "".join(f"{note} " for note in notes)
        + f"Show this preview to the user; only after they agree, call {plan.tool} again with {again}, "
        f"confirm=true and this confirmation_token.{after}",
    )


def _result(plan: DeletePlan, done: Chunked) -> DeleteResult:
    notes = []
    gone = list(plan.not_found) + done.gone
    if done.deleted:
        which = f": {id_list(done.deleted)}" if plan.by_ids else ""
        notes.append(f"Deleted {sessions_phrase(len(done.deleted))} and all their messages{which}.")
    elif done.gone and not done.problem and not done.uncertain:
        notes.append(f"Nothing was deleted: {id_list(done.gone)} no longer existed (deleted meanwhile?).")
    if plan.not_found:
        notes.append(
            f"Already gone: {id_list(plan.not_found)}."
            if plan.by_ids
            else f"{len(plan.not_found)} previewed sessions were already gone."
        )
    if plan.added:
        notes.append(f"{plan.added} sessions that match now but were not previewed were left alone.")
    if plan.changed:
        notes.append(
            f"Left alone: {id_list(plan.changed)}, which now name sessions other than the preview showed (their "
            "start time differs)."
        )
    if done.uncertain:
        notes.append(
            f"The outcome of {sessions_phrase(len(done.uncertain))} is unknown: look them up with "
            "get_message_session before anything else."
        )
    if done.checked:
        notes.append(done.checked)
    if done.problem:
        notes.append(f"Stopped: {done.problem}")
    return DeleteResult(
        deleted=bool(done.deleted),
        message=" ".join(notes),
        deleted_count=len(done.deleted),
        deleted_ids=done.deleted[:IDS_LISTED],
        deleted_all=plan.choice == "all" and not plan.added and len(done.deleted) == len(plan.sessions),
        not_found_ids=gone[:IDS_LISTED],
        uncertain_ids=done.uncertain[:IDS_LISTED],
    )


def gate(ctx: ToolContext, confirm: bool, token: str | None) -> Refusal | None:
    """The checks every delete passes before anything is looked up: who can approve, and that a confirmation
    carries its token."""
    if app_context(ctx).settings.require_human_confirmation and not can_ask_user(ctx):
        return Refusal("refused", HUMAN_REQUIRED)
    if confirm and not token:
        return Refusal("refused", CONFIRM_WITHOUT_PREVIEW)
    return None


async def unused(app: AppContext, claims: Claims) -> Refusal | None:
    """Refuse a token already used, or issued before the ledger lost what it knew, before anything is looked up
    or anybody asked."""
    try:
        if claims.epoch != await app.ledger.epoch():
            return Refusal("refused", LEDGER_RESET)
        if await app.ledger.used(claims.nonce):
            return Refusal("refused", ALREADY_USED)
    except StateUnavailable as exc:
        return Refusal("failed", f"{LEDGER_DOWN} ({exc})")
    return None


async def claim(app: AppContext, claims: Claims) -> Refusal | None:
    """Use the token up: of concurrent confirmations with it, exactly one gets None and goes on."""
    try:
        if await app.ledger.claim(claims.nonce, claims.expires):
            return None
    except StateUnavailable as exc:
        return Refusal("failed", f"{LEDGER_DOWN} ({exc})")
    return Refusal("refused", ALREADY_USED)


class Audit(Protocol):
    """Writes one audit record of the delete call at hand."""

    def __call__(self, outcome: Outcome, detail: str = "") -> None: ...


def _auditor(ctx: ToolContext, app: AppContext, plan: DeletePlan) -> Audit:
    """The audit of a call that sends nothing: the ids asked for, or the set chosen."""
    client = client_name(ctx)

    def audit(outcome: Outcome, detail: str = "") -> None:
        _record(app, plan, client, outcome, plan.requested if plan.by_ids else plan.ids, detail)

    return audit


def _record(
    app: AppContext,
    plan: DeletePlan,
    client: str | None,
    outcome: Outcome,
    ids: Sequence[int],
    detail: str,
    operation: str | None = None,
) -> None:
    app.audit.record(
        tool=plan.tool,
        outcome=outcome,
        client=client,
        ids=ids,
        delete_all=plan.choice == "all",
        all_sessions_count=len(plan.sessions) if plan.choice == "all" else None,
        detail=_with_scope(plan, detail),
        operation=operation,
    )


def _with_scope(plan: DeletePlan, detail: str) -> str:
    """For a set chosen by filter or all, what chose it and how many it holds, before ``detail``."""
    if plan.by_ids:
        return detail
    where = "all sessions" if plan.choice == "all" else f"filter: {plan.flt.describe()}" if plan.flt else ""
    return f"{where}; {len(plan.sessions)} sessions; {detail}".strip("; ")


def _refuse(plan: DeletePlan, refusal: Refusal, audit: Audit) -> NoReturn:
    audit(refusal.outcome, refusal.reason)
    if plan.confirm and refusal.outcome == "refused":
        metrics.CONFIRMATIONS_REFUSED.labels(plan.tool).inc()
    raise ToolError(refusal.reason)


async def _declined(
    app: AppContext, claims: Claims, asked: bool, approval: ElicitationResult[DeleteApproval], audit: Audit
) -> str | None:
    """When the person was asked and did not approve, what to tell the model; None when the delete may go on.
    The person has answered: the token is spent either way."""
    if not asked or (isinstance(approval, AcceptedElicitation) and approval.data.confirm):
        return None
    await claim(app, claims)
    cancelled = isinstance(approval, CancelledElicitation)
    audit("cancelled" if cancelled else "declined")
    how = "cancelled the confirmation" if cancelled else "did not approve the delete"
    return f"Nothing was deleted: the user {how}. Do not retry unless the user asks again."


def can_ask_user(ctx: ToolContext) -> bool:
    # Form elicitation, as the SDK counts it: a bare capability (from before modes existed) or form mode.
    capabilities = ctx.client_capabilities
    elicitation = capabilities.elicitation if capabilities else None
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _named(session: MessageSession) -> str:
    """A session as the form names it (a hallucinated id shows as what it is). Its title or text is quoted as
    a JSON string, on one line: words from TextMagic read as a session's title, never as the form's own."""
    words = " ".join((session.title or session.text or "").split())
    words = words if len(words) <= 40 else words[:39] + "…"
    quoted = f", {json.dumps(words, ensure_ascii=False)}" if words else ""
    return f"{session.id} ({(session.start_time or '')[:10] or 'no date'}{quoted})"


@dataclass
class Audited:
    """The audit of one confirmed delete: a record before anything is sent, and one of how it ended."""

    app: AppContext
    plan: DeletePlan
    client: str | None
    # Shared by "sending" and how it ended, so that the two can be matched (and an unmatched one reconciled).
    operation: str = field(default_factory=new_operation)
    ended: bool = False

    def record(self, outcome: Outcome, ids: Sequence[int], detail: str = "") -> None:
        _record(self.app, self.plan, self.client, outcome, ids, detail, self.operation)
        self.ended = outcome != "sending"


@contextmanager
def audited(ctx: ToolContext, app: AppContext, plan: DeletePlan) -> Iterator[Audited]:
    """Write "sending" now; on the way out, how it ended (the body records it), or "cancelled" when the call
    was cancelled (client gone, timeout, shutdown) and "failed" on an error, whatever was sent by then."""
    trail = Audited(app, plan, client_name(ctx))
    trail.record("sending", plan.ids)
    try:
        yield trail
    except anyio.get_cancelled_exc_class():
        trail.record(
            "cancelled", plan.ids, "the call was cancelled while deleting: what was sent may have been done"
        )
        raise
    except Exception as exc:
        trail.record("failed", plan.ids, str(exc))
        raise
    if not trail.ended:
        trail.record("failed", plan.ids, "ended without an outcome")


async def look_up(
    ctx: ToolContext, app: AppContext, ids: tuple[int, ...]
) -> tuple[tuple[MessageSession, ...], tuple[int, ...]]:
    """The sessions among ``ids`` that exist (in that order), and the ids that do not."""
    done = 0

    async def one(session_id: int) -> MessageSession | None:
        nonlocal done
        try:
            found: MessageSession | None = await app.textmagic.get_session(session_id)
        except TextMagicError as exc:
            if exc.http_status != 404:
                raise
            found = None
        done += 1
        await ctx.report_progress(done, len(ids), f"Looked up {done} of {len(ids)} sessions")
        return found

    results = await gather([functools.partial(one, i) for i in ids])
    found = tuple(session for session in results if session is not None)
    return found, tuple(sorted(i for i, session in zip(ids, results, strict=True) if session is None))


@dataclass(frozen=True)
class Standing:
    """Of the sessions a preview showed, those there now; those gone; how many match now that it did not show."""

    present: tuple[MessageSession, ...]
    vanished: tuple[int, ...]
    added: int


async def still_there(
    ctx: ToolContext, app: AppContext, flt: SessionFilter, previewed: frozenset[int]
) -> Standing:
    """The filter scanned again; previewed sessions it does not find are looked up one by one."""
    scan = await scan_sessions(ctx, flt)
    now = {session.id: session for session in scan.sessions}
    present = tuple(now[i] for i in sorted(previewed, reverse=True) if i in now)
    unseen = tuple(sorted(i for i in previewed if i not in now))
    found, vanished = await look_up(ctx, app, unseen) if unseen else ((), ())
    return Standing(present + found, vanished, len(set(now) - previewed))


@dataclass
class Chunked:
    """How the deletes sent for a plan ended: deleted, gone before they ran, unknown, and why it stopped."""

    deleted: list[int] = field(default_factory=list)
    gone: list[int] = field(default_factory=list)
    uncertain: list[int] = field(default_factory=list)
    problem: str | None = None
    # What a look-up after an uncertain answer found, when it found every session gone.
    checked: str | None = None

    @property
    def outcome(self) -> Outcome:
        if self.uncertain:
            return "uncertain"
        if self.deleted:
            return "deleted"
        return "nothing_to_delete" if self.gone and not self.problem else "failed"


async def delete_in_chunks(ctx: ToolContext, app: AppContext, plan: DeletePlan) -> Chunked:
    """Delete the plan's sessions CHUNK at a time. A chunk that may or may not have been carried out is looked up,
    never sent again; a definite failure, or a check that fails, stops the rest."""
    ids = plan.ids
    done = Chunked()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        try:
            if plan.choice == "id":
                await app.textmagic.delete_session(chunk[0])
            else:
                await app.textmagic.delete_sessions(chunk)
        except UncertainOutcome as failure:
            # TextMagic did not say what became of it: look, and look again a little later, since it may carry
            # it out late; what is still there then is reported unknown, never as not deleted.
            try:
                still, gone = await look_up(ctx, app, tuple(chunk))
                if still:
                    await anyio.sleep(app.settings.delete_recheck)
                    still, late = await look_up(ctx, app, tuple(s.id for s in still))
                    gone += late
            except TextMagicError:
                done.uncertain += chunk
                done.problem = f"{failure} Checking which were deleted failed too; nothing more was sent."
                return done
            done.deleted += list(gone)
            if still:
                done.uncertain += [s.id for s in still]
                done.problem = (
                    f"{failure} Looked twice, {app.settings.delete_recheck:g} s apart: {len(still)} of these "
                    f"{len(chunk)} are still there, and may yet be deleted late, or not at all. Nothing more was "
                    "sent. Look them up before anything else; ask for a fresh preview to delete them."
                )
                return done
            done.checked = f"{failure} Checked afterwards: it deleted {sessions_phrase(len(gone))}."
            continue
        except TextMagicError as exc:
            if exc.http_status == 404 and plan.choice == "id":
                done.gone += chunk
                continue
            done.problem = str(exc)
            return done
        done.deleted += chunk
        await ctx.report_progress(len(done.deleted), len(ids), f"Deleted {len(done.deleted)} of {len(ids)}")
    return done


def sessions_phrase(count: int) -> str:
    return f"{count} session" if count == 1 else f"{count} sessions"


def id_list(ids: Sequence[int]) -> str:
    return ", ".join(str(i) for i in ids)


HUMAN_REQUIRED = (
    "Nothing was deleted. This server requires a person to approve every delete in the MCP client "
    "(TEXTMAGIC_REQUIRE_HUMAN_CONFIRMATION=true), and this client cannot ask its user: it did not declare "
    "elicitation support. Use a client that can show confirmation forms (such as Claude Code or VS Code), "
    "or ask the server's operator."
)
CONFIRM_WITHOUT_PREVIEW = (
    "Nothing was deleted. confirm=true needs the confirmation_token from a preview. Call again without "
    "confirm to get a preview and a token, and show the preview to the user first."
)
ALREADY_USED = (
    "Nothing was deleted. This confirmation_token was used already: a confirmation works once. Call again "
    "without confirm for a fresh preview, and show it to the user."
)
LEDGER_RESET = (
    "Nothing was deleted. The record of used confirmations was reset since this preview (the server restarted, "
    "or Redis lost its data), so this token cannot be known to be unused. Call again without confirm for a fresh "
    "preview, and show it to the user."
)
LEDGER_DOWN = (
    "Nothing was deleted: the record of used confirmations (Redis, TEXTMAGIC_REDIS_URL) cannot be reached, and "
    "a delete is not done unguarded. Try again once it is back"
)
ALL_UNSEEN = (
    "Nothing was deleted. The account has more sessions than one preview reads (it stopped after the newest "
    "{seen}, TEXTMAGIC_SCAN_LIMIT), so deleting all of them cannot be previewed. Delete them by filter "
    "(delete_message_sessions_matching with since and until) a period at a time, or ask the operator to raise "
    "TEXTMAGIC_SCAN_LIMIT."
)
PREVIEWS_DOWN = (
    "Nothing was deleted: the previewed set cannot be kept for its confirmation (Redis, TEXTMAGIC_REDIS_URL, "
    "cannot be reached). Try again once it is back"
)
PREVIEW_UNKNOWN = (
    "Nothing was deleted. This server does not know the preview of that token: it expired, the server restarted, "
    "or another replica made it (replicas share previews only through TEXTMAGIC_REDIS_URL). Call again without "
    "confirm for a fresh preview, and show it to the user."
)
