"""The server's log set-up, the same whoever starts it: the console script or uvicorn's factory, whose worker
processes would otherwise drop every line below WARNING (the per-call lines among them)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str | int) -> None:
    """Logs to stderr at ``level``: stdout belongs to the MCP protocol (stdio) or to a printed result."""
    logging.basicConfig(stream=sys.stderr, level=level, format=FORMAT)
    # Our loggers at the level asked for even when something (uvicorn) configured the root logger first.
    logging.getLogger("server").setLevel(level)
    # httpx2 logs every request at INFO; the per-call line already carries TextMagic's statuses.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    # The stateless HTTP transport announces the end of every request at INFO.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
