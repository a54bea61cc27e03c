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
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from server.state.caller import caller

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
]

MAX_RECORD = 4096
# Within a record: ids listed (the rest counted), and the characters of a client's name and of a detail.
_IDS = 100
_NAME = 120
_DETAIL = 1500

logger = logging.getLogger("server.state.audit")
# Audit lines reach stderr even when the rest of the logging is quieter.
logger.setLevel(logging.INFO)


class AuditLog:
    """Appends audit records; never given a key or a token, so none can be written."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
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
    ) -> None:
        listed = sorted(ids)
        who = caller()
        entry: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
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


def ids_digest(ids: Iterable[int]) -> str:
    return hashlib.sha256(",".join(str(i) for i in sorted(ids)).encode()).hexdigest()


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
