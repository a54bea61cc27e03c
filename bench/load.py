"""Load run: many MCP clients over HTTP against a slow, rate-limited TextMagic (the emulator).

    python bench/load.py [--clients 20] [--calls 100] [--latency 0.05] [--rate 50]

Every call must succeed (no 429 surfaced), throughput must reach TextMagic's rate limit, and the server's
memory must stay flat. Prints a table and writes bench/results/load.json. Not a test: run it by hand.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
import httpx2
from harness import TOKEN, emulator_on_loopback, http_server, machine, save_results
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def client_run(url: str, session_ids: list[int], calls: int, outcome: dict[str, int]) -> None:
    """One client: a realistic mix of the read tools, one call after another."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=120) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        for n in range(calls):
            session_id = session_ids[n % len(session_ids)]
            tool, arguments = [
                ("get_message_session_stat", {"id": session_id}),
                ("get_messages_by_session_id", {"id": session_id, "statuses": ["f", "e", "j"]}),
                ("get_message_session", {"id": session_id}),
                ("get_all_message_sessions", {"limit": 20}),
            ][n % 4]
            try:
                result = await client.call_tool(tool, arguments)
            except Exception:
                outcome["exceptions"] += 1
                continue
            if result.is_error:
                outcome["failed"] += 1
                text = " ".join(block.text for block in result.content if block.type == "text")
                outcome["429_surfaced"] += "429" in text
            else:
                outcome["ok"] += 1


async def run(clients: int, calls: int, latency: float, rate: int) -> dict[str, Any]:
    with emulator_on_loopback() as served:
        emulator = served.emulator
        emulator.latency = latency
        emulator.limit_rate(rate)
        session_ids = sorted(emulator.data.sessions)
        with http_server(served.url, TEXTMAGIC_RATE_LIMIT=str(rate)) as server:
            warm: dict[str, int] = {"ok": 0, "failed": 0, "exceptions": 0, "429_surfaced": 0}
            await client_run(server.url, session_ids, 20, warm)
            rss_before = server.rss_mb()
            before = len(emulator.requests)
            rejected_before = emulator.rejected_for_rate
            outcome = {"ok": 0, "failed": 0, "exceptions": 0, "429_surfaced": 0}
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                for _ in range(clients):
                    group.start_soon(client_run, server.url, session_ids, calls, outcome)
            elapsed = time.perf_counter() - started
            rss_after = server.rss_mb()
            textmagic_requests = len(emulator.requests) - before
    return {
        "clients": clients,
        "calls_per_client": calls,
        "emulator_latency_s": latency,
        "rate_limit_per_s": rate,
        "calls": clients * calls,
        **outcome,
        "textmagic_requests": textmagic_requests,
        "textmagic_429_answers": emulator.rejected_for_rate - rejected_before,
        "seconds": round(elapsed, 2),
        "calls_per_s": round(clients * calls / elapsed, 2),
        "textmagic_requests_per_s": round(textmagic_requests / elapsed, 2),
        "throughput_vs_rate_limit": round(textmagic_requests / elapsed / rate, 3),
        "rss_mb_before": round(rss_before, 1),
        "rss_mb_after": round(rss_after, 1),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--rate", type=int, default=50)
    args = parser.parse_args()
    figures = anyio.run(run, args.clients, args.calls, args.latency, args.rate)
    width = max(map(len, figures))
    for key, value in figures.items():
        if key != "machine":
            print(f"{key:<{width}}  {value}")
    save_results("load", figures)
    clean = figures["failed"] == figures["exceptions"] == figures["429_surfaced"] == 0
    print("PASS" if clean else "FAIL: some calls failed")


if __name__ == "__main__":
    main()
