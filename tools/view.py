"""The delivery report as a picture, all of it: the MCP Apps view (``io.modelcontextprotocol/ui``), its binding to
the tools whose results it draws, what a view-capable host is handed beside a result, the listing a client
without the extension gets, and the same page standalone (``report --html``).

The view is one self-contained HTML document, ``view.html`` beside this module, built from ``view/`` by
``cd view && npm ci && npm run build`` (the official ext-apps ``App`` class bundled in): it loads nothing and
connects nowhere, so it is served with an empty content security policy. A client without the extension lists
exactly the tools and resources it would without the view, and gets the same results.
"""

from __future__ import annotations

import functools
import html
import json
from importlib import resources
from typing import Any

from mcp.server.apps import Apps, ResourceCsp, client_supports_apps
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext

from tools.models import DeliveryReport, GroupBy
from tools.outcomes import EXPLAINED

VIEW_URI = "ui://textmagic-sessions/delivery-report.html"
# A viewed tool's _meta, as ``Apps.tool`` would stamp it (the server registers the tools itself, so that they
# are listed in the catalog's order).
BINDING: dict[str, Any] = {"ui": {"resourceUri": VIEW_URI}}
# Under this key of a result's _meta a view-capable host finds the report the view draws; the model does not
# see it, so its size costs no tokens.
VIEW_KEY = "textmagic-sessions-mcp/report"
# What the view shows beyond the model's answer: where failures happened, why, and who failed.
VIEW_GROUPS: tuple[GroupBy, ...] = ("country", "reject_reason")
VIEW_FAILED = 500
_DATA_MARK = "<!--tool-result-->"


@functools.cache
def view_html() -> str:
    """The view as hosts load it."""
    page = resources.files("tools").joinpath("view.html").read_text(encoding="utf-8")
    return page.replace("__VIEW_KEY__", html.escape(VIEW_KEY)).replace("__OUTCOMES__", html.escape(EXPLAINED))


def view_extension() -> Apps:
    """The Apps extension that serves the view."""
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


def view_meta(report: DeliveryReport) -> dict[str, Any]:
    """The _meta of a report's result for a host that shows the view."""
    return {VIEW_KEY: report.model_dump(mode="json", by_alias=True, exclude_none=True)}


def standalone_html(result: dict[str, Any]) -> str:
    """The view with a tool result (``structuredContent`` and ``_meta``, as a host hands it over) embedded: a
    file that opens in any browser, with nothing to connect to."""
    # "<" escaped, so no text in the data can close the script element.
    data = json.dumps(result, ensure_ascii=False).replace("<", "\\u003c")
    embedded = f'<script type="application/json" id="tool-result">{data}</script>'
    return view_html().replace(_DATA_MARK, embedded, 1)


async def hidden_without_apps(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: the lists a client without the extension gets, as they would be without the view."""
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
