"""The delete audit trail: JSON lines, to stderr always and to a file when configured.

A confirmed delete leaves two records: ``sending`` before anything is sent, and how it ended (deleted,
uncertain, failed, cancelled), so that a call cancelled midway, timed out or stopped by a shutdown still leaves
a trail. Every other attempt (preview, refused, declined, nothing to delete) leaves one. What clients send is
escaped and bounded: each record is one line of ASCII, at most MAX_RECORD bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from server.observability import metrics
from server.state.caller import caller
from server.textmagic import TextMagicClient, TextMagicError

Outcome = Literal[
    "preview",
    "refused",
    "failed",
    "declined",
    "cancelled",
    "nothing_to_delete",
    "sending",
    "deleted",
    "uncertain",
    "reconciled",
]
# Outcomes that end a confirmed delete's "sending" record.
ENDINGS = frozenset({"deleted", "uncertain", "failed", "cancelled", "nothing_to_delete", "reconciled"})

MAX_RECORD = 4096
# Within a record: ids listed (the rest counted), and the characters of a client's name and of a detail.
_IDS = 100
_NAME = 120
_DETAIL = 1500

logger = logging.getLogger("server.state.audit")
# Audit lines reach stderr even when the rest of the logging is quieter.
logger.setLevel(logging.INFO)


class AuditLog:
    """Appends audit records; never given a key or a token, so none can be written. ``instance`` names the
    replica that writes them."""

    def __init__(self, path: Path | None, instance: str = "") -> None:
        self._path = path
        self._instance = instance
        # Deletes of this process between "sending" and how they ended: never reconciled while they run.
        self._running: set[str] = set()
        if path is not None:
            # Opened once at start so a path that cannot be written stops the server, not a delete later.
            with path.open("a", encoding="utf-8"):
                pass

    def record(
        self,
        *,
        tool: str,
        outcome: Outcome,
        client: str | None,
        ids: Iterable[int] = (),
        delete_all: bool = False,
        all_sessions_count: int | None = None,
        detail: str | None = None,
        operation: str | None = None,
    ) -> None:
        """``operation``: the id a confirmed delete's records share ("sending" and how it ended); else new."""
        listed = sorted(ids)
        who = caller()
        operation = operation or new_operation()
        if outcome == "sending":
            self._running.add(operation)
        elif outcome in ENDINGS:
            self._running.discard(operation)
        metrics.DELETE_CALLS.labels(outcome).inc()
        entry: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "operation": operation,
            "instance": _bounded(self._instance, _NAME),
            "tool": tool,
            "outcome": outcome,
            "client": _bounded(client, _NAME) if client is not None else None,
            # Who called, from the access token (never the token itself); absent over stdio.
            "subject": _bounded(who.subject, _NAME) if who.subject is not None else None,
            "client_id": _bounded(who.client_id, _NAME) if who.client_id is not None else None,
        }
        if delete_all:
            entry["all"] = True
            if all_sessions_count is not None:
                entry["all_sessions_count"] = all_sessions_count
        entry["ids"] = listed[:_IDS]
        if len(listed) > _IDS:
            # The rest counted, and the whole set named by its digest: a record stays small, and which sessions it
            # speaks of can still be checked against any list of ids (sha256 of the sorted ids, comma-separated).
            entry["ids_count"] = len(listed)
            entry["ids_sha256"] = ids_digest(listed)
        if detail:
            entry["detail"] = _bounded(detail, _DETAIL)
        # ASCII with every other character escaped: no line or paragraph separator, no control character, can
        # split a record, whatever a client calls itself.
        line = json.dumps(entry, ensure_ascii=True)
        if len(line) > MAX_RECORD:
            entry["detail"] = "(cut)"
            line = json.dumps(entry, ensure_ascii=True)
        logger.info("delete audit %s", line)
        if self._path is not None:
            try:
                with self._path.open("a", encoding="utf-8") as file:
                    file.write(line + "\n")
            except OSError as exc:
                logger.error("could not append to the audit log %s: %s", self._path, exc)

    def unfinished(self, *, own: bool = False, at_most: int = 100) -> list[dict[str, Any]]:
        """The newest "sending" records of this file with no record of how they ended: deletes a crash or a
        kill interrupted after they were sent, never one this process is carrying out; ``own``: only this
        instance's."""
        if self._path is None:
            return []
        sending: dict[str, dict[str, Any]] = {}
        with self._path.open(encoding="utf-8") as file:
            for line in file:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                operation = entry.get("operation") if isinstance(entry, dict) else None
                if not isinstance(operation, str):
                    continue
                if entry.get("outcome") == "sending":
                    if operation not in self._running and (
                        not own or entry.get("instance") == self._instance
                    ):
                        sending[operation] = entry
                elif entry.get("outcome") in ENDINGS:
                    sending.pop(operation, None)
        return list(sending.values())[-at_most:]


def new_operation() -> str:
    return secrets.token_hex(8)


def ids_digest(ids: Iterable[int]) -> str:
    return hashlib.sha256(",".join(str(i) for i in sorted(ids)).encode()).hexdigest()


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Sessions one reconciliation looks up at most: it must not spend the account's rate on the past.
RECONCILE_LOOKUPS = 200


async def reconcile(audit: AuditLog, textmagic: TextMagicClient, *, own: bool = False) -> None:
    """Each delete the audit file says was sent but not how it ended (the process died meanwhile, or could not
    write its outcome) looked up at TextMagic, and its trail completed with a "reconciled" record naming what is
    gone. At start every such record of the file; later (``own``) those this instance wrote."""
    budget = RECONCILE_LOOKUPS
    for entry in audit.unfinished(own=own):
        ids = [i for i in entry.get("ids", []) if isinstance(i, int) and not isinstance(i, bool)][:budget]
        budget -= len(ids)
        gone, still = [], []
        for session_id in ids:
            try:
                await textmagic.get_session(session_id)
            except TextMagicError as exc:
                if exc.http_status != 404:
                    logger.warning("could not reconcile the audit now: %s", exc)
                    return
                gone.append(session_id)
            else:
                still.append(session_id)
        unlisted = int(entry.get("ids_count") or len(ids)) - len(ids)
        audit.record(
            tool=str(entry.get("tool") or ""),
            outcome="reconciled",
            client=None,
            ids=gone,
            detail=f"{'looked up later' if own else 'after a restart'}, of the {len(ids)} sessions its sending record lists: {len(gone)} gone "
            f"(deleted), {len(still)} still there {still}"
            + (f"; {unlisted} more the record did not list were not looked up" if unlisted > 0 else ""),
            operation=str(entry["operation"]),
        )
        if budget <= 0:
            return
