"""The delivery report view (MCP Apps): served and bound for clients that negotiated the extension and unseen by
the others; in a real browser (Debian's headless Chromium, driven by Playwright) inside a small host that speaks
the extension's published messages; and the standalone page that `report --html` writes.

The browser tests save screenshots to artifacts/ (the README's picture is one of them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from mcp import Client
from mcp.client.extension import advertise
from mcp.server.apps import APP_MIME_TYPE, EXTENSION_ID

from server.sandbox import Emulator
from server.state.settings import load_settings
from server.wiring.app import build_server
from tests.helpers import connect, required_service, run_script, text_of, tm_requests
from tools.view import VIEW_KEY, VIEW_URI, standalone_html, view_html

if TYPE_CHECKING:
    # Imported where a browser runs: without Chromium those tests skip, and nothing else needs Playwright.
    from playwright.sync_api import Browser, FrameLocator, Page

APPS = advertise(EXTENSION_ID, {"mimeTypes": [APP_MIME_TYPE]})
PICTURED = {"get_delivery_report", "find_message_sessions"}
HOST = Path(__file__).with_name("apps_host.html")
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# As the machine's notes advise for a closed network: no background connections, no first-run work.
CHROMIUM_FLAGS = [
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def big_send_out(emulator: Emulator) -> int:
    [session_id] = [i for i, s in emulator.data.sessions.items() if s["title"] == "Black Friday"]
    return session_id


@pytest.mark.anyio
async def test_the_view_is_served_and_bound_for_clients_with_apps(make_server: Any, era: str) -> None:
    async with connect(make_server(), era, extensions=[APPS]) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        resources = (await client.list_resources()).resources
        read = await client.read_resource(VIEW_URI)
    bound = {name for name, tool in tools.items() if (tool.meta or {}).get("ui")}
    assert bound == PICTURED
    assert tools["get_delivery_report"].meta == {"ui": {"resourceUri": VIEW_URI}}
    [listed] = [resource for resource in resources if resource.uri == VIEW_URI]
    [content] = read.contents
    # An empty policy: the view loads nothing and connects nowhere.
    assert (listed.mime_type, listed.meta) == (APP_MIME_TYPE, {"ui": {"csp": {}}})
    assert (content.mime_type, content.meta) == (APP_MIME_TYPE, {"ui": {"csp": {}}})
    page = getattr(content, "text", "")
    assert page == view_html() and len(page.encode()) <= 300 * 1024
    assert f'data-view-key="{VIEW_KEY}"' in page and "Outcomes: delivered d;" in page


@pytest.mark.anyio
async def test_a_client_without_apps_sees_what_it_saw_before(
    make_server: Any, emulator: Emulator, era: str
) -> None:
    arguments = {"id": big_send_out(emulator)}
    # No store of settled sessions: each call reads TextMagic, so their requests can be compared.
    server = make_server(cache_mb=0)
    async with connect(server, era) as plain, connect(server, era, extensions=[APPS]) as pictured:
        plain_tools, pictured_tools = (await plain.list_tools()).tools, (await pictured.list_tools()).tools
        plain_resources = (await plain.list_resources()).resources
        before = len(tm_requests(emulator))
        answer = await plain.call_tool("get_delivery_report", arguments)
        between = len(tm_requests(emulator))
        drawn = await pictured.call_tool("get_delivery_report", arguments)
        after = len(tm_requests(emulator))
    assert all(not (tool.meta or {}).get("ui") for tool in plain_tools)
    assert [t.model_dump(exclude={"meta"}) for t in plain_tools] == [
        t.model_dump(exclude={"meta"}) for t in pictured_tools
    ]
    assert VIEW_URI not in {resource.uri for resource in plain_resources}
    # The model's answer is the same either way; only the view gets more, from the same requests.
    assert (answer.structured_content, text_of(answer)) == (drawn.structured_content, text_of(drawn))
    assert VIEW_KEY not in (answer.meta or {})
    assert after - between == between - before
    picture = (drawn.meta or {})[VIEW_KEY]
    assert picture["outcome"] == drawn.structured_content["outcome"]
    assert {"country", "reject_reason"} <= picture["groups"].keys()
    assert len(picture["failed"]) == min(500, picture["failed_count"]) > 20


@pytest.mark.anyio
async def test_no_view_without_the_tools_it_draws(make_server: Any) -> None:
    async with connect(make_server(tools="get_message_session"), extensions=[APPS]) as client:
        resources = (await client.list_resources()).resources
        capabilities = client.server_capabilities
    assert VIEW_URI not in {resource.uri for resource in resources}
    assert EXTENSION_ID not in (capabilities.extensions or {})


def test_the_standalone_page_keeps_hostile_text_inside_its_data() -> None:
    hostile = "</script><script>alert(1)</script><!--"
    page = standalone_html({"structuredContent": {"sessions": [{"id": 1, "title": hostile}], "matched": 1}})
    assert page.count("</script>") == view_html().count("</script>") + 1
    assert hostile not in page and "\\u003c/script>" in page


# In a browser.


@dataclass
class Watched:
    """What a page did: console errors and uncaught exceptions, and every request it tried."""

    problems: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


def sandbox_results(*calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Results of tool calls on the sandbox, as a host that shows views receives them."""

    async def run() -> list[dict[str, Any]]:
        async with Client(build_server(load_settings(sandbox=True)), extensions=[APPS]) as client:
            results = [await client.call_tool(name, arguments) for name, arguments in calls]
        return [result.model_dump(mode="json", by_alias=True, exclude_none=True) for result in results]

    # A thread of its own: Playwright's synchronous API keeps an event loop running in this one.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(anyio.run, run).result()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = required_service("chromium", "apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def black_friday() -> tuple[dict[str, Any], dict[str, Any]]:
    """The report of the sandbox's 5,200-recipient send-out: its arguments and its result."""
    [found] = sandbox_results(("find_message_sessions", {"text": "Black Friday"}))
    arguments = {"id": found["structuredContent"]["sessions"][0]["id"]}
    [result] = sandbox_results(("get_delivery_report", arguments))
    return arguments, result


@contextmanager
def page_of(browser: Browser, *, width: int = 900, height: int = 1000) -> Iterator[tuple[Page, Watched]]:
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    watched = Watched()
    page.on(
        "console", lambda message: watched.problems.append(message.text) if message.type == "error" else None
    )
    page.on("pageerror", lambda error: watched.problems.append(str(error)))
    page.on("request", lambda request: watched.requests.append(request.url))
    try:
        yield page, watched
    finally:
        context.close()


def in_host(
    page: Page, arguments: dict[str, Any], result: dict[str, Any], theme: str = "light"
) -> FrameLocator:
    page.set_content(HOST.read_text(encoding="utf-8"))
    page.evaluate(
        "([html, input, result, theme]) => showView(html, input, result, theme)",
        [view_html(), arguments, result, theme],
    )
    return page.frame_locator("#view")


def column(frame: FrameLocator, table: str, index: int) -> list[str]:
    cells = frame.locator(f'[data-table="{table}"] tbody tr td:nth-child({index})')
    return [text.strip() for text in cells.all_inner_texts()]


def test_the_view_in_a_host_shows_the_report(browser: Browser, black_friday: tuple[Any, Any]) -> None:
    from playwright.sync_api import expect

    arguments, result = black_friday
    report = result["_meta"][VIEW_KEY]
    outcome = report["outcome"]
    first_failed = report["failed"][0]["number"]
    with page_of(browser, height=1150) as (page, watched):
        frame = in_host(page, arguments, result)
        expect(frame.locator("h1")).to_have_text("Black Friday")
        expect(frame.locator('[data-bucket="delivered"] b')).to_have_text(f"{outcome['delivered']:,}")
        expect(frame.locator('[data-bucket="failed"] b')).to_have_text(f"{outcome['failed']:,}")
        expect(frame.locator('[data-bucket="rejected"] b')).to_have_text(f"{outcome['rejected']:,}")
        rate = f"{outcome['delivery_rate'] * 100:.1f}%"
        expect(frame.locator(".figure").first).to_contain_text(rate)
        expect(frame.locator('[data-table="failed recipients"]')).to_contain_text(first_failed)
        # The cost as billed, and the deleted messages it holds beyond the counts.
        deleted = report["deleted"]["messages"]
        expect(frame.get_by_text(f"{deleted:,} deleted messages")).to_contain_text(
            "in the cost, not in the counts"
        )
        # Failures by country, largest first: the sandbox's US carriers reject the alphanumeric sender.
        countries = column(frame, "group-country", 1)
        assert countries[0] == "US" and "DE" in countries
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "delivery-report.png"))
        numbers = column(frame, "failed recipients", 1)
        frame.get_by_role("button", name="Number").click()
        expect(frame.locator('[data-table="failed recipients"] th[data-key="number"]')).to_have_attribute(
            "aria-sort", "ascending"
        )
        assert column(frame, "failed recipients", 1) == sorted(numbers, key=int)
        frame.get_by_role("button", name="Number").click()
        assert column(frame, "failed recipients", 1) == sorted(numbers, key=int, reverse=True)
        frame.get_by_role("searchbox", name="Filter the failed recipients").fill(first_failed)
        expect(frame.locator('[data-table="failed recipients"] tbody tr')).to_have_count(
            sum(1 for failed in report["failed"] if first_failed in failed["number"])
        )
        received, unanswered = page.evaluate("[host.received, host.unanswered]")
    assert watched.problems == []
    # Nothing loaded, nothing asked of the host but the handshake: no tool call, so never a delete.
    assert watched.requests == []
    assert {"ui/initialize", "ui/notifications/initialized"} <= set(received) and unanswered == []


def test_the_view_follows_a_dark_host_and_fits_a_narrow_one(
    browser: Browser, black_friday: tuple[Any, Any]
) -> None:
    from playwright.sync_api import expect

    arguments, result = black_friday
    with page_of(browser, width=360, height=1400) as (page, watched):
        frame = in_host(page, arguments, result, theme="dark")
        expect(frame.locator("html")).to_have_attribute("data-theme", "dark")
        background = frame.locator("body").evaluate("body => getComputedStyle(body).backgroundColor")
        text = frame.locator("body").evaluate("body => getComputedStyle(body).color")
        assert _luminance(background) < 0.2 < 0.7 < _luminance(text)
        # Wide tables scroll inside their own box; the page itself does not scroll sideways.
        assert frame.locator("html").evaluate("root => root.scrollWidth <= root.clientWidth")
        page.screenshot(path=str(ARTIFACTS / "delivery-report-dark-narrow.png"))
    assert watched.problems == [] and watched.requests == []


def test_found_sessions_sort_by_their_rate(browser: Browser) -> None:
    from playwright.sync_api import expect

    arguments = {"since": "2026-01-01", "with_stats": True, "limit": 15}
    [result] = sandbox_results(("find_message_sessions", arguments))
    with page_of(browser) as (page, watched):
        frame = in_host(page, arguments, result)
        expect(frame.locator("h1")).to_contain_text("sessions matched")
        frame.get_by_role("button", name="Delivery rate").click()
        falling = column(frame, "sessions", 9)
        frame.get_by_role("button", name="Delivery rate").click()
        rising = column(frame, "sessions", 9)
    assert len(falling) == len(result["structuredContent"]["sessions"]) > 5
    # Sessions with no final message yet have no rate: last, whichever way.
    for shown, descending in ((falling, True), (rising, False)):
        rates = [float(text.rstrip("%")) for text in shown if text != "n/a"]
        assert rates == sorted(rates, reverse=descending) and len(set(rates)) > 3
        assert shown[len(rates) :] == ["n/a"] * (len(shown) - len(rates))
    assert watched.problems == [] and watched.requests == []


def test_the_report_command_writes_a_page_with_the_same_numbers(browser: Browser, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    today = datetime.now(UTC).date()
    period = {"since": str(today - timedelta(days=30)), "until": str(today - timedelta(days=8))}
    [result] = sandbox_results(("get_delivery_report", period))
    report = result["_meta"][VIEW_KEY]
    file = tmp_path / "report.html"
    done = run_script(
        "--sandbox", "report", "--since", period["since"], "--until", period["until"], "--html", str(file)
    )
    assert done.returncode == 0, done.stderr
    with page_of(browser) as (page, watched):
        page.goto(file.as_uri())
        expect(page.locator("h1")).to_have_text(f"{report['sessions']} sessions")
        expect(page.locator('[data-bucket="delivered"] b')).to_have_text(
            f"{report['outcome']['delivered']:,}"
        )
        expect(page.locator('[data-bucket="failed"] b')).to_have_text(f"{report['outcome']['failed']:,}")
        # A period: a row for each of its sessions.
        assert page.locator('[data-table="group-session"] tbody tr').count() == report["sessions"] > 3
    assert watched.problems == [] and watched.requests == [file.as_uri()]


def test_the_report_command_prints_markdown() -> None:
    sessions = Emulator().data.sessions
    small = min(sessions, key=lambda i: (sessions[i]["numbersCount"] < 3, sessions[i]["numbersCount"]))
    done = run_script("--sandbox", "report", "--id", str(small), "--markdown")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# Delivery report: ") and "## By country" in done.stdout
    assert f"Session {small}, started" in done.stdout
    refused = run_script("--sandbox", "report", "--since", "yesterday", "--markdown")
    assert refused.returncode == 1 and "since: not an ISO 8601 date" in refused.stderr


def _luminance(css_color: str) -> float:
    red, green, blue = (int(part) / 255 for part in re.findall(r"\d+", css_color)[:3])
    return 0.2126 * red + 0.7152 * green + 0.0722 * blue
