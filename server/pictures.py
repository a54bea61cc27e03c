"""MCP Apps (``io.modelcontextprotocol/ui``): the delivery report view, bound to the tools whose results it
draws, and shown only to clients that negotiated the extension.

A client without the extension lists exactly the tools and resources it did before the view existed, and gets
the same results: the view's resource and each tool's ``_meta.ui`` are left out of what it is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mcp.server.apps import Apps, ResourceCsp, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from tools.catalog import ToolSpec
from tools.report_view import VIEW_URI, view_html


def picture_extension(served: Sequence[ToolSpec]) -> Apps | None:
    """The Apps extension serving the view; None when no tool it draws is served."""
    if not any(spec.pictured for spec in served):
        return None
    apps = Apps()
    apps.add_html_resource(
        VIEW_URI,
        view_html(),
        name="delivery-report-view",
        title="Delivery report",
        description="The delivery report and found sessions as a picture: outcomes, failures by country and "
        "reason, failed recipients to sort and filter. Reads nothing from the network; calls no tool.",
        # Empty: the view loads nothing and connects nowhere.
        csp=ResourceCsp(),
    )
    return apps


def view_binding(spec: ToolSpec) -> dict[str, Any] | None:
    """The tool's ``_meta``: for a tool the view draws, its binding, as ``Apps.tool`` would stamp it (the tools
    are registered by the server itself, so that they are listed in the catalog's order)."""
    return {"ui": {"resourceUri": VIEW_URI}} if spec.pictured else None


async def unseen_without_apps(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: lists for a client without the extension, as they were before the view."""
    result = await call_next(ctx)
    if ctx.method not in ("tools/list", "resources/list") or not isinstance(result, dict):
        return result
    if client_supports_apps(ctx):
        return result
    if ctx.method == "tools/list":
        return {**result, "tools": [_without_ui(tool) for tool in result.get("tools", [])]}
    kept = [r for r in result.get("resources", []) if not str(r.get("uri", "")).startswith("ui://")]
    return {**result, "resources": kept}


def _without_ui(tool: dict[str, Any]) -> dict[str, Any]:
    meta = {key: value for key, value in (tool.get("_meta") or {}).items() if key != "ui"}
    rest = {key: value for key, value in tool.items() if key != "_meta"}
    return {**rest, "_meta": meta} if meta else rest
