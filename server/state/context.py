"""What every tool call can reach: the server-lifetime TextMagic client, the token signer, what previews showed,
the audit log, the settings, the store of settled sessions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context

from server.state.audit import AuditLog
from server.state.confirmation import Confirmations
from server.state.ledger import Ledger
from server.state.previews import Previews
from server.state.settings import Settings
from server.state.store import Store
from server.textmagic import TextMagicClient


@dataclass(frozen=True)
class AppContext:
    textmagic: TextMagicClient
    confirmations: Confirmations
    previews: Previews
    ledger: Ledger
    audit: AuditLog
    settings: Settings
    # The store of settled sessions; None when switched off (TEXTMAGIC_CACHE_MB=0).
    store: Store | None = None


ToolContext = Context[AppContext, Any]


def app_context(ctx: ToolContext) -> AppContext:
    state: AppContext = ctx.request_context.lifespan_context
    return state


def client_name(ctx: ToolContext) -> str | None:
    """The name the MCP client gave for itself, if it gave one (optional on the 2026-07-28 protocol)."""
    params = ctx.session.client_params
    return params.client_info.name if params else None
