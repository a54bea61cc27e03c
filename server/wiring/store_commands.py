"""The command line's hold on the store of settled sessions: ``sync`` fills it ahead of the questions (a nightly
job runs it before its report), ``cache clear`` empties it.

``sync`` asks the server for the report of the period, through an in-process MCP client, as often as it takes:
each call reads what the store does not hold yet, under the pacer and the call's budget, and keeps the settled
sessions; it stops when a call adds nothing more. A terminal sees its progress; a log, one line at the end.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TYPE_CHECKING, Any

from server.state.settings import ConfigError, Settings
from server.state.store import remove_file

if TYPE_CHECKING:
    from server.wiring.app import SessionsServer

logger = logging.getLogger("server.sync")
# Reads at most this many times: each adds what one call's budget allows.
MAX_ROUNDS = 1000


def needs_a_file(settings: Settings) -> None:
    """ConfigError unless the store is on disk: only there does it outlive this command."""
    if settings.cache_path is None or not settings.cache_mb:
        raise ConfigError(
            "sync fills the store of settled sessions on disk, for the servers that read it after: set "
            "TEXTMAGIC_CACHE_PATH (and TEXTMAGIC_CACHE_MB above 0) here and for the server"
        )


async def sync(server: SessionsServer, arguments: dict[str, Any]) -> int:
    from mcp import Client

    terminal = sys.stderr.isatty()

    async def shown(progress: float, total: float | None, message: str | None) -> None:
        if terminal and message:
            print(f"\r{message:<60}", end="", file=sys.stderr, flush=True)

    began = time.monotonic()
    kept, rounds = -1, 0
    report: dict[str, Any] = {}
    async with Client(server) as client:
        while rounds < MAX_ROUNDS:
            rounds += 1
            result = await client.call_tool(
                "get_delivery_report", {**arguments, "failed_limit": 0}, progress_callback=shown
            )
            if result.is_error or result.structured_content is None:
                text = "\n".join(block.text for block in result.content if block.type == "text")
                print(f"\ntextmagic-sessions-mcp: {text}", file=sys.stderr)
                return 1
            report = result.structured_content
            now_kept = int(report.get("memory", {}).get("sessions", 0))
            if now_kept == kept:
                break
            kept = now_kept
    if terminal:
        print(file=sys.stderr)
    unsettled = int(report["sessions"]) - kept
    logger.info(
        "sync %s: %d sessions in the store, %d not settled yet (read at every question)%s; %d reads, %.1f s",
        report.get("filter", "every session"),
        kept,
        unsettled,
        "" if report.get("complete") else f"; stopped short: {report.get('reason')}",
        rounds,
        time.monotonic() - began,
    )
    return 0 if report.get("complete") else 1


def clear(settings: Settings) -> int:
    """Empty the store on disk: its file removed (with SQLite's journal files), if it is this server's."""
    path = settings.cache_path
    if path is None:
        print(
            "textmagic-sessions-mcp: the store is in memory (TEXTMAGIC_CACHE_PATH is unset): nothing outlives the "
            "server, nothing to clear",
            file=sys.stderr,
        )
        return 0
    if not remove_file(path):
        print(f"textmagic-sessions-mcp: {path} does not exist: nothing to clear", file=sys.stderr)
        return 0
    print(f"textmagic-sessions-mcp: emptied the store of settled sessions at {path}", file=sys.stderr)
    return 0
