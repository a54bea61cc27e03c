"""The tools with their titles and honest annotations, in the order they are listed."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from server.textmagic import TextMagicError
from tools.deletes import delete_message_session, delete_message_sessions_bulk
from tools.render import TABLE_LEGEND
from tools.sessions import (
    get_all_message_sessions,
    get_message_session,
    get_message_session_stat,
    get_messages_by_session_id,
)

# Every tool talks to TextMagic, an external service: open world.
READ = ToolAnnotations(read_only_hint=True, open_world_hint=True)
# Deleting an already deleted session changes nothing more: idempotent, yet destructive.
DELETE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True
)


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[Any]]
    title: str
    annotations: ToolAnnotations
    # Pages render as tables: their description says how to read one.
    lists_pages: bool = False

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def description(self) -> str:
        text = inspect.cleandoc(self.fn.__doc__ or "")
        return f"{text}\n\n{TABLE_LEGEND}" if self.lists_pages else text

    @property
    def handler(self) -> Callable[..., Awaitable[Any]]:
        """The tool function as registered: TextMagic's failures become text for the model to act on."""
        fn = self.fn

        @functools.wraps(fn)
        async def explained(*args: Any, **kwargs: Any) -> Any:
            try:
                return await fn(*args, **kwargs)
            except TextMagicError as exc:
                raise ToolError(str(exc)) from exc

        return explained


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(get_all_message_sessions, "List message sessions", READ, lists_pages=True),
    ToolSpec(get_message_session, "Get a message session", READ),
    ToolSpec(get_message_session_stat, "Get a session's delivery statistics", READ),
    ToolSpec(get_messages_by_session_id, "Get a session's messages", READ, lists_pages=True),
    ToolSpec(delete_message_session, "Delete a message session", DELETE),
    ToolSpec(delete_message_sessions_bulk, "Delete message sessions (bulk or all)", DELETE),
)
