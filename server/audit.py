"""The delete audit trail: one JSON line per delete attempt, to stderr always and to a file when configured."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

Outcome = Literal[
    "preview", "refused", "failed", "declined", "cancelled", "nothing_to_delete", "deleted", "uncertain"
]

logger = logging.getLogger("server.audit")
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
        entry: dict[str, object] = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "tool": tool,
            "outcome": outcome,
            "client": client,
        }
        if delete_all:
            entry["all"] = True
            if all_sessions_count is not None:
                entry["all_sessions_count"] = all_sessions_count
        else:
            entry["ids"] = sorted(ids)
        if detail:
            entry["detail"] = detail
        line = json.dumps(entry, ensure_ascii=False)
        logger.info("delete audit %s", line)
        if self._path is not None:
            try:
                with self._path.open("a", encoding="utf-8") as file:
                    file.write(line + "\n")
            except OSError as exc:
                logger.error("could not append to the audit log %s: %s", self._path, exc)
