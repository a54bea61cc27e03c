"""What the server offers: the tools with their titles and honest annotations (in the order they are listed), the
resources beside them, the prompts, and which of them a server's settings serve. The wiring registers them."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import ToolAnnotations

from server.state.caller import reachable
from server.state.settings import ConfigError, Settings
from server.textmagic import TextMagicError
from tools.deletes import (
    delete_message_session,
    delete_message_sessions_bulk,
    delete_message_sessions_matching,
)
from tools.finding import find_message_sessions
from tools.prompts import cleanup_sessions, delivery_report
from tools.recipients import CSV_TEMPLATE, get_recipients, recipients_csv
from tools.render import TABLE_LEGEND
from tools.reports import get_delivery_report
from tools.resources import REPORT_TEMPLATE, SESSION_TEMPLATE, report_resource, session_resource
from tools.sessions import (
    get_all_message_sessions,
    get_message_session,
    get_message_session_stat,
    get_messages_by_session_id,
)
from tools.view import BINDING

# Every tool talks to TextMagic, an external service: open world.
READ = ToolAnnotations(read_only_hint=True, open_world_hint=True)
# Deleting an already deleted session changes nothing more: idempotent, yet destructive.
# Not read-only goes without saying once destructive is said.
DELETE = ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=True)


@dataclass(frozen=True)
class ToolSpec:
    fn: Callable[..., Awaitable[Any]]
    title: str
    annotations: ToolAnnotations
    # How its result's lists read (tools.render), said in its description.
    legend: str | None = None
    # Hosts that render MCP Apps show its result as the delivery report view (tools.view).
    viewed: bool = False

    @property
    def name(self) -> str:
        return self.fn.__name__

    @property
    def description(self) -> str:
        # Paragraphs on one line each: the docstring's wrapping means nothing to the model.
        paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(self.fn.__doc__ or "").split("\n\n")]
        return "\n".join([*paragraphs, self.legend] if self.legend else paragraphs)

    def tool(self) -> Tool:
        """The tool as the SDK serves it, its schemas derived from the function's signature: TextMagic's failures
        become text for the model to act on."""
        return Tool.from_function(
            _explained(self.fn, ToolError),
            name=self.name,
            title=self.title,
            description=self.description,
            annotations=self.annotations,
            meta=BINDING if self.viewed else None,
        )


@dataclass(frozen=True)
class ResourceSpec:
    fn: Callable[..., Awaitable[str]]
    uri: str
    name: str
    mime_type: str
    # Served only with this tool: what the tool lists and switches leave out, its resource leaves out too.
    tool: str

    @property
    def description(self) -> str:
        return inspect.cleandoc(self.fn.__doc__ or "")

    @property
    def handler(self) -> Callable[..., Awaitable[str]]:
        """The resource as registered: refused where its tool may not be used; TextMagic's failures explained."""
        return _reachable_only(_explained(self.fn, ResourceError), self.tool)


@dataclass(frozen=True)
class PromptSpec:
    fn: Callable[..., str]
    title: str
    # Served only with this tool, and shown only where it may be used.
    tool: str

    @property
    def description(self) -> str:
        # One line: the docstring's wrapping means nothing to a client that shows it.
        return " ".join(inspect.cleandoc(self.fn.__doc__ or "").split())

    @property
    def handler(self) -> Callable[..., str]:
        """The prompt as registered: refused where its tool may not be used."""
        return _reachable_only(self.fn, self.tool)


def _reachable_only(fn: Callable[..., Any], tool: str) -> Callable[..., Any]:
    """``fn`` refused, as its kind of error, where ``tool`` may not be used (the request was narrowed)."""
    refusal = f"This is not available on this connection: it goes with {tool}, which is not."
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def read(*args: Any, **kwargs: Any) -> Any:
            if not reachable(frozenset({tool})):
                raise ResourceNotFoundError(refusal)
            return await fn(*args, **kwargs)

        return read

    @functools.wraps(fn)
    def render(*args: Any, **kwargs: Any) -> Any:
        if not reachable(frozenset({tool})):
            raise ValueError(refusal)
        return fn(*args, **kwargs)

    return render


def _explained(fn: Callable[..., Awaitable[Any]], error: type[Exception]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def explained(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except TextMagicError as exc:
            if error is ResourceError and exc.http_status == 404:
                # A resource that does not exist: the protocol's "invalid params" (-32602), not a failure.
                raise ResourceNotFoundError(str(exc)) from exc
            raise error(str(exc)) from exc
        except ToolError as exc:
            # A tool's own refusal (bad arguments) read through a resource.
            if error is ToolError:
                raise
            raise error(str(exc)) from exc

    return explained


TOOLS: tuple[ToolSpec, ...] = (
    ToolSpec(get_all_message_sessions, "List message sessions", READ, TABLE_LEGEND),
    ToolSpec(get_message_session, "Get a message session", READ),
    ToolSpec(get_message_session_stat, "Get a session's delivery statistics", READ),
    ToolSpec(get_messages_by_session_id, "Get a session's messages", READ, TABLE_LEGEND),
    ToolSpec(find_message_sessions, "Find message sessions", READ, viewed=True),
    ToolSpec(get_delivery_report, "Delivery report", READ, viewed=True),
    ToolSpec(get_recipients, "Recipients by number", READ),
    ToolSpec(delete_message_session, "Delete a message session", DELETE),
    ToolSpec(delete_message_sessions_bulk, "Delete message sessions (bulk or all)", DELETE),
    ToolSpec(delete_message_sessions_matching, "Delete message sessions by filter", DELETE),
)
RESOURCES: tuple[ResourceSpec, ...] = (
    ResourceSpec(session_resource, SESSION_TEMPLATE, "session", "application/json", "get_message_session"),
    ResourceSpec(report_resource, REPORT_TEMPLATE, "session-report", "text/markdown", "get_delivery_report"),
    ResourceSpec(recipients_csv, CSV_TEMPLATE, "recipients", "text/csv", "get_recipients"),
)
PROMPTS: tuple[PromptSpec, ...] = (
    PromptSpec(delivery_report, "Delivery report of a session or a period", "get_delivery_report"),
    PromptSpec(
        cleanup_sessions, "Clean out sessions, with a preview first", "delete_message_sessions_matching"
    ),
)


def select_tools(settings: Settings) -> tuple[list[ToolSpec], dict[str, str]]:
    """The tools ``settings`` serve, and for each tool left out the reason a call to it gets.

    Raises:
        ConfigError: for a name in TEXTMAGIC_TOOLS that is no tool's.
    """
    known = [spec.name for spec in TOOLS]
    if settings.tools is not None:
        unknown = [name for name in settings.tools if name not in known]
        if unknown:
            raise ConfigError(
                f"TEXTMAGIC_TOOLS: unknown tool {', '.join(map(repr, unknown))}; the tools are {', '.join(known)}"
            )
    served: list[ToolSpec] = []
    refusals: dict[str, str] = {}
    for spec in TOOLS:
        if settings.read_only and spec.annotations.destructive_hint:
            refusals[spec.name] = (
                f"{spec.name} is disabled: this server is read-only (TEXTMAGIC_READ_ONLY / --read-only). "
                "Nothing was deleted."
            )
        elif settings.tools is not None and spec.name not in settings.tools:
            refusals[spec.name] = f"{spec.name} is not enabled on this server (TEXTMAGIC_TOOLS / --tools)."
        else:
            served.append(spec)
    return served, refusals


def destructive(name: str) -> bool:
    return any(spec.name == name and spec.annotations.destructive_hint for spec in TOOLS)
