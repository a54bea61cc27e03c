"""Sharing the account: fairness between callers, two processes on one account, memory under a hostile page
count. TextMagic is the emulator 150 ms away, enforcing 50 requests/s per account as TextMagic does.

    .venv/bin/python bench/sharing.py      (about 2 minutes)

1. Fairness: a light caller's one-request calls (get_message_session) while 0, 3 and 8 other callers each run
   the 5,200-recipient send-out's report over and over, every caller with a token of its own, over HTTP.
2. Two stdio servers on one account, each running reports at once: the 429s TextMagic answered, and the calls
   that failed.
3. Memory: the server's RSS before and after a report whose first page claims 200,000 pages.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from typing import Any

import anyio
import httpx2
from harness import SCRIPT, emulator_on_loopback, http_server, machine, save_results, server_environment
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

LATENCY_MS = 150
TOKENS = [f"bench-caller-{n}" for n in range(10)]
LIGHT_CALLS = 15


def black_friday(emulator: Any) -> int:
    [session_id] = [i for i, s in emulator.data.sessions.items() if s["title"] == "Black Friday"]
    return int(session_id)


async def light_latencies(url: str, session_id: int, heavy: int, report_id: int) -> list[float]:
    """The light caller's latencies (s) while ``heavy`` callers run reports."""
    stop = anyio.Event()
    latencies: list[float] = []

    async def heavy_caller(token: str) -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            while not stop.is_set():
                await client.call_tool("get_delivery_report", {"id": report_id})

    async def light_caller() -> None:
        async with (
            httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKENS[0]}"}, timeout=120) as http,
            Client(streamable_http_client(url, http_client=http)) as client,
        ):
            await client.call_tool("get_message_session", {"id": session_id})
            # Let the heavy reports get going before measuring.
            await anyio.sleep(1.0 if heavy else 0)
            for _ in range(LIGHT_CALLS):
                started = time.perf_counter()
                result = await client.call_tool("get_message_session", {"id": session_id})
                latencies.append(time.perf_counter() - started)
                assert not result.is_error
                await anyio.sleep(0.1)
        stop.set()

    async with anyio.create_task_group() as group:
        for n in range(heavy):
            group.start_soon(heavy_caller, TOKENS[n + 1])
        group.start_soon(light_caller)
    return latencies


async def fairness() -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with emulator_on_loopback() as served:
        served.emulator.latency = LATENCY_MS / 1000
        served.emulator.limit_rate(50)
        report_id = black_friday(served.emulator)
        session_id = max(served.emulator.data.sessions)
        with http_server(served.url, TEXTMAGIC_MCP_TOKENS=",".join(TOKENS)) as server:
            for heavy in (0, 3, 8):
                samples = await light_latencies(server.url, session_id, heavy, report_id)
                figures[str(heavy)] = {
                    "median_ms": round(statistics.median(samples) * 1000, 1),
                    "worst_ms": round(max(samples) * 1000, 1),
                }
                print(f"fairness: {heavy} heavy callers: {figures[str(heavy)]}", file=sys.stderr)
        base = figures["0"]
        for heavy in ("3", "8"):
            figures[heavy]["median_x"] = round(figures[heavy]["median_ms"] / base["median_ms"], 2)
            figures[heavy]["worst_x"] = round(figures[heavy]["worst_ms"] / base["median_ms"], 2)
        figures["rejected_for_rate"] = served.emulator.rejected_for_rate
    return figures


async def two_processes() -> dict[str, Any]:
    with emulator_on_loopback() as served:
        served.emulator.latency = LATENCY_MS / 1000
        served.emulator.limit_rate(50)
        params = StdioServerParameters(command=SCRIPT, env=server_environment(served.url))
        results: list[Any] = []
        started = time.perf_counter()
        async with (
            Client(stdio_client(params)) as first,
            Client(stdio_client(params)) as second,
            anyio.create_task_group() as group,
        ):
            for client in (first, second) * 3:

                async def report(client: Any = client) -> None:
                    results.append(await client.call_tool("get_delivery_report", {"since": "2026-10-01"}))

                group.start_soon(report)
        figures = {
            "reports": len(results),
            "failed": sum(1 for r in results if r.is_error),
            "rejected_for_rate": served.emulator.rejected_for_rate,
            "requests": len(served.emulator.requests),
            "seconds": round(time.perf_counter() - started, 1),
        }
    print(f"two processes: {figures}", file=sys.stderr)
    return figures


async def hostile_page_count() -> dict[str, Any]:
    with emulator_on_loopback() as served:
        report_id = black_friday(served.emulator)
        hostile = {"page": 1, "limit": 100, "pageCount": 200_000, "resources": []}
        with http_server(served.url, TEXTMAGIC_CALL_BUDGET="500", TEXTMAGIC_RATE_LIMIT="1000") as server:
            headers = {"Authorization": "Bearer bench-token"}
            async with (
                httpx2.AsyncClient(headers=headers, timeout=120) as http,
                Client(streamable_http_client(server.url, http_client=http)) as client,
            ):
                await client.call_tool("get_message_session", {"id": report_id})
                before = server.rss_mb()
                served.emulator.fail_next(200, hostile, path=f"/api/v2/sessions/{report_id}/messages")
                result = await client.call_tool("get_delivery_report", {"id": report_id})
                after = server.rss_mb()
    figures = {
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "complete": result.structured_content["complete"],
        "requests": len(served.emulator.requests),
    }
    print(f"hostile page count: {figures}", file=sys.stderr)
    return figures


async def main() -> None:
    results = {
        "machine": machine(),
        "fairness": await fairness(),
        "two_processes": await two_processes(),
        "hostile_page_count": await hostile_page_count(),
    }
    save_results("sharing", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    anyio.run(main)
