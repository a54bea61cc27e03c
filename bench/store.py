"""Follow-up questions from the store of settled sessions, at TextMagic's distance (150 ms) and its limit (50
requests/s, enforced by the emulator), against a made-up account far larger than the sandbox's:

1. a week of 100,000 messages (20 sessions of 5,000), asked four ways (plain, by country, by day, by sender):
   TextMagic's requests and the time of each; the follow-ups must take at most 5% of the first call's requests
   and under 2 s each;
2. a month of 1,000,000 messages (200 sessions of 5,000) after ``sync``: the report complete, in under 5 s;
3. memory: the server's RSS with the store in memory full at its bound (TEXTMAGIC_CACHE_MB, 256 by default).

    pip install -e '.[bench]' && python bench/store.py

Prints a table and writes bench/results/store.json. Not part of the test run (about 3 minutes).
"""

from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
from harness import (
    SCRIPT,
    TOKEN,
    Served,
    emulator_on_loopback,
    http_server,
    machine,
    save_results,
    server_environment,
)
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from server.sandbox.seed import SeedData

LATENCY = 0.150
RATE = 50
PER_SESSION = 5000
COUNTRIES = ["US", "GB", "DE", "FR", "CA", "AU", "ES", "NL", "IE"]
SENDERS = ["447624800500", "12025550143", "ACMEINFO", "BrightSmile"]
# Final statuses only: a week old, every message has arrived or failed. One in a hundred deleted.
STATUSES = "d" * 90 + "f" * 4 + "e" * 2 + "j" * 2 + "u" * 2


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+0000")


def account(sessions: int, days: int) -> SeedData:
    """``sessions`` send-outs of PER_SESSION messages each, spread over the last ``days`` days."""
    data = SeedData()
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    for n in range(sessions):
        session_id = 70_000_000 + n
        start = end - timedelta(days=days) + timedelta(seconds=days * 86_400 * n / sessions)
        messages = []
        for k in range(PER_SESSION):
            status = STATUSES[(n * 7 + k) % len(STATUSES)]
            messages.append(
                {
                    "id": session_id * 10_000 + k,
                    "receiver": f"44{7_000_000_000 + (n * 1_237 + k * 13) % 90_000_000:010d}",
                    "status": status,
                    "text": "Your weekly update from Acme.",
                    "messageTime": stamp(start + timedelta(seconds=k % 3600)),
                    "sessionId": session_id,
                    "country": COUNTRIES[k % len(COUNTRIES)],
                    "sender": SENDERS[n % len(SENDERS)],
                    "price": 0.04,
                    "deleted": k % 100 == 7,
                    **({"rejectReason": "l"} if status == "j" else {}),
                }
            )
        data.messages[session_id] = messages
        data.sessions[session_id] = {
            "id": session_id,
            "startTime": stamp(start),
            "text": "Your weekly update from Acme.",
            "title": f"Update {n}",
            "source": "A",
            "destination": "t",
            "referenceId": None,
            "price": round(0.04 * PER_SESSION, 4),
            "numbersCount": PER_SESSION,
        }
    return data


async def ask(url: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600) as http,
        Client(streamable_http_client(f"{url}", http_client=http)) as client,
    ):
        result = await client.call_tool(tool, arguments)
    assert not result.is_error and result.structured_content is not None, result.content
    return result.structured_content


async def timed(served: Served, url: str, arguments: dict[str, Any]) -> dict[str, Any]:
    before = len(served.emulator.requests)
    began = time.perf_counter()
    report = await ask(url, "get_delivery_report", {**arguments, "failed_limit": 0})
    return {
        "seconds": round(time.perf_counter() - began, 2),
        "requests": len(served.emulator.requests) - before,
        "messages": report["messages"],
        "complete": report["complete"],
        "from_memory": report.get("memory", {}).get("sessions", 0),
    }


async def week() -> dict[str, Any]:
    with emulator_on_loopback() as served:
        served.emulator.data = account(20, 7)
        served.emulator.latency = LATENCY
        served.emulator.limit_rate(RATE)
        since = (datetime.now(UTC) - timedelta(days=8)).date().isoformat()
        with http_server(served.url) as server:
            asked = {}
            for name, group_by in (
                ("plain", []),
                ("by country", ["country"]),
                ("by day", ["day"]),
                ("by sender", ["sender"]),
            ):
                asked[name] = await timed(served, server.url, {"since": since, "group_by": group_by})
            rss = server.rss_mb()
    first = asked["plain"]["requests"]
    return {
        "questions": asked,
        "follow_up_share": max(a["requests"] for a in list(asked.values())[1:]) / first,
        "rss_mb": round(rss, 1),
    }


async def month() -> dict[str, Any]:
    with emulator_on_loopback() as served, tempfile.TemporaryDirectory() as folder:
        served.emulator.data = account(200, 30)
        since = (datetime.now(UTC) - timedelta(days=31)).date().isoformat()
        path = str(Path(folder) / "store.db")
        # The nightly job: filled as fast as the stand-in answers (the figure of interest is what follows).
        began = time.perf_counter()
        synced = await anyio.run_process(
            [SCRIPT, "sync", "--since", since],
            env=server_environment(
                served.url, TEXTMAGIC_CACHE_PATH=path, TEXTMAGIC_RATE_LIMIT="1000", TEXTMAGIC_LOG_LEVEL="INFO"
            ),
            check=False,
        )
        sync_s = time.perf_counter() - began
        log = synced.stderr.decode()
        assert synced.returncode == 0, log
        served.emulator.latency = LATENCY
        served.emulator.limit_rate(RATE)
        with http_server(served.url, TEXTMAGIC_CACHE_PATH=path) as server:
            report = await timed(served, server.url, {"since": since})
            rss = server.rss_mb()
        size = (await anyio.Path(path).stat()).st_size
    summary = [line for line in log.splitlines() if "server.sync" in line]
    return {
        "sync_s": round(sync_s, 1),
        "sync_log": summary[-1] if summary else "",
        "report": report,
        "store_file_mb": round(size / 2**20, 1),
        "rss_mb": round(rss, 1),
    }


async def bound() -> dict[str, Any]:
    """The store in memory filled past its bound: a month read at the stand-in's full speed."""
    with emulator_on_loopback() as served:
        served.emulator.data = account(200, 30)
        since = (datetime.now(UTC) - timedelta(days=31)).date().isoformat()
        with http_server(served.url, TEXTMAGIC_RATE_LIMIT="1000") as server:
            before = server.rss_mb()
            for _ in range(12):
                await ask(server.url, "get_delivery_report", {"since": since, "failed_limit": 0})
            full = server.rss_mb()
    return {"rss_start_mb": round(before, 1), "rss_full_mb": round(full, 1), "bound_mb": 256}


async def run() -> dict[str, Any]:
    return {"machine": machine(), "week": await week(), "month": await month(), "bound": await bound()}


def main() -> None:
    figures = anyio.run(run)
    save_results("store", figures)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
