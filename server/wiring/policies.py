"""What every tool call passes, on every transport (stdio, in-memory, HTTP), before its tool runs: a tool switched
off is refused, an unknown argument name is refused rather than dropped, invalid values are explained field by
field, a delete refused here is audited like any other refusal; and every call leaves one log line.

Arguments are checked here, before the SDK validates them again, against the very model it derives from the
tool function: so the explanation comes from pydantic's own errors, and nothing invalid reaches a tool.
"""

from __future__ import annotations

import json
import logging
import reprlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from server.observability import metrics
from server.state.audit import AuditLog
from server.state.caller import allowed_tools, caller
from server.state.context import AppContext, client_name
from server.textmagic import spend_at_most, track_statuses
from tools.catalog import destructive

call_log = logging.getLogger("server.calls")
# Bounded however large the input: a million-item list is shown, and costs, like a short one.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 2, 5, 4
_SHORT.maxstring, _SHORT.maxlong, _SHORT.maxother = 60, 30, 60

Result = CallToolResult | InputRequiredResult
Run = Callable[[str, dict[str, Any], "Context[AppContext, Any] | None"], Awaitable[Result]]


class CallPolicies:
    """The checks and the log line around each call; ``tools`` are the served tools, ``refusals`` what a call to
    each tool left out gets."""

    def __init__(
        self, audit: AuditLog, tools: Mapping[str, Tool], refusals: Mapping[str, str], call_budget: int
    ) -> None:
        self._audit = audit
        self._tools = tools
        self._refusals = refusals
        self._call_budget = call_budget

    def start_read(self) -> None:
        """A read (a tool, a resource) begins: its requests to TextMagic take from a budget of their own."""
        spend_at_most(self._call_budget)

    @property
    def served(self) -> frozenset[str]:
        return frozenset(self._tools)

    async def call(
        self, name: str, arguments: dict[str, Any], context: Context[AppContext, Any] | None, run: Run
    ) -> Result:
        """``run`` the call unless a policy refuses it, and log how it went."""
        # One line per call: never the arguments, which may hold ids, tokens or worse.
        statuses = track_statuses()
        if not destructive(name):
            # A delete is never cut off midway; a read stops at its budget and says what it covered.
            self.start_read()
        started = time.perf_counter()
        outcome = "error"
        try:
            if refusal := self.refusal(name, arguments):
                if destructive(name):
                    self._audit_refused(name, arguments, context, refusal)
                raise ToolError(refusal)
            result = await run(name, arguments, context)
            outcome = (
                "input_required"
                if isinstance(result, InputRequiredResult)
                else ("error" if result.is_error else "ok")
            )
            return result
        except anyio.get_cancelled_exc_class():
            outcome = "cancelled"
            raise
        finally:
            took = time.perf_counter() - started
            # A name the server does not serve is the client's text: one label for all of them.
            known = name if name in self._tools else "(unknown)"
            metrics.TOOL_CALLS.labels(known, outcome).inc()
            metrics.TOOL_CALL_SECONDS.labels(known).observe(took)
            if call_log.isEnabledFor(logging.INFO):
                who = caller()
                line = {
                    "tool": name,
                    "outcome": outcome,
                    "duration_ms": round(took * 1000, 1),
                    "textmagic_status": statuses,
                    "subject": who.subject,
                    "client_id": who.client_id,
                }
                call_log.info(json.dumps(line))

    def refusal(self, name: str, arguments: dict[str, Any]) -> str | None:
        """Why the call must not reach its tool, or None."""
        if name in self._refusals:
            return self._refusals[name]
        allowed = allowed_tools.get()
        if allowed is not None and name in self._tools and name not in allowed:
            return (
                f"{name} is not available on this connection (its path, headers or the access token's scopes "
                "leave it out). Nothing was done."
            )
        tool = self._tools.get(name)
        if tool is None:
            # The SDK answers for a tool it does not know.
            return None
        # A misspelt argument (say "session_id") must not be silently dropped, least of all on a delete.
        known = frozenset(tool.parameters.get("properties", {}))
        if unknown := sorted(set(arguments) - known):
            return (
                f"Invalid arguments for {name}: unknown argument {', '.join(map(repr, unknown))}. "
                f"Valid arguments: {', '.join(sorted(known))}."
            )
        try:
            tool.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            return explain_invalid_arguments(name, exc)
        return None

    def _audit_refused(
        self, name: str, arguments: dict[str, Any], context: Context[AppContext, Any] | None, reason: str
    ) -> None:
        """A delete refused before it ran is still a delete attempt: it belongs in the audit trail."""
        self._audit.record(
            tool=name,
            outcome="refused",
            client=client_name(context) if context else None,
            ids=_ids_in(arguments),
            delete_all=arguments.get("all") is True,
            detail=reason,
        )


def _ids_in(arguments: dict[str, Any]) -> list[int]:
    """The session ids in unvalidated arguments, for the audit record of a refused call."""
    ids = arguments.get("ids")
    raw: list[Any] = ids if isinstance(ids, list) else [arguments.get("id")]
    return [i for i in raw if isinstance(i, int) and not isinstance(i, bool)][:100]


def explain_invalid_arguments(tool: str, error: ValidationError) -> str:
    """One clause per offending field: where, what is wrong, what was given."""
    clauses = []
    for item in error.errors(include_url=False)[:10]:
        where = ".".join(str(part) for part in item["loc"]) or "arguments"
        if item["type"] == "missing":
            clauses.append(f"{where} is required")
            continue
        # A validator's own message starts "Value error, ": the field and the message say it already.
        message = str(item["msg"]).removeprefix("Value error, ")
        clauses.append(f"{where}: {message} (got {_SHORT.repr(item.get('input'))})")
    return f"Invalid arguments for {tool}: {'; '.join(clauses)}. Correct them and call again."
