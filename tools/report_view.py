"""The delivery report as a picture: the MCP Apps view bound to get_delivery_report and find_message_sessions,
what a view-capable host is handed beside the result, and the same page standalone (``report --html``).

The view is one self-contained HTML document, ``report_view.html`` beside this module, built from ``view/`` by
``cd view && npm ci && npm run build`` (the official ext-apps ``App`` class bundled in): no network access, so
it is served with an empty content security policy.
"""

from __future__ import annotations

import functools
import html
import json
from importlib import resources
from typing import Any

from tools.models import DeliveryReport, GroupBy
from tools.outcomes import EXPLAINED

VIEW_URI = "ui://textmagic-sessions/delivery-report.html"
# Under this key of a result's _meta a view-capable host finds the report the view draws; the model does not
# see it, so its size costs no tokens.
PICTURE_KEY = "textmagic-sessions-mcp/report"
# What the picture shows beyond the model's answer: where failures happened, why, and who failed.
PICTURE_GROUPS: tuple[GroupBy, ...] = ("country", "reject_reason")
PICTURE_FAILED = 500
_DATA_MARK = "<!--tool-result-->"


@functools.cache
def view_html() -> str:
    """The view as hosts load it."""
    page = resources.files("tools").joinpath("report_view.html").read_text(encoding="utf-8")
    return page.replace("__PICTURE_KEY__", html.escape(PICTURE_KEY)).replace(
        "__OUTCOMES__", html.escape(EXPLAINED)
    )


def picture_meta(report: DeliveryReport) -> dict[str, Any]:
    """The _meta of a report's result for a host that shows the view."""
    return {PICTURE_KEY: report.model_dump(mode="json", by_alias=True, exclude_none=True)}


def standalone_html(result: dict[str, Any]) -> str:
    """The view with a tool result (``structuredContent`` and ``_meta``, as a host hands it over) embedded: a
    file that opens in any browser, with nothing to connect to."""
    # "<" escaped, so no text in the data can close the script element.
    data = json.dumps(result, ensure_ascii=False).replace("<", "\\u003c")
    embedded = f'<script type="application/json" id="tool-result">{data}</script>'
    return view_html().replace(_DATA_MARK, embedded, 1)
