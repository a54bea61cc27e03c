"""A 2 s TextMagic outage behind the probes: a balancer routes calls to the replica only while its /readyz answers
200 (probed every 500 ms, as HAProxy's `inter` would), and a client calls every 100 ms through it. TextMagic (the
emulator, 150 ms away) answers 503 to everything from t = 2 s to t = 4 s.

    pip install -e '.[bench]' && python bench/probes.py

Before the fix, readiness routed on TextMagic: the replica left the pool for the outage plus the readiness cache
(10 s) plus the balancer's rise. Prints the timeline's summary and writes bench/results/probes.json.
"""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx2
from harness import TOKEN, emulator_on_loopback, http_server, machine, save_results
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

OUTAGE = (2.0, 4.0)
RUN = 8.0


async def run() -> dict[str, Any]:
    with emulator_on_loopback() as served:
        emulator = served.emulator
        emulator.latency = 0.150
        session_id = max(emulator.data.sessions)
        with http_server(served.url) as server:
            base = server.url.removesuffix("/mcp")
            ready = True
            probes: list[tuple[float, int]] = []
            calls: list[tuple[float, str, float]] = []
            began = time.perf_counter()

            def now() -> float:
                return time.perf_counter() - began

            async with (
                httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as http,
                Client(streamable_http_client(server.url, http_client=http)) as client,
                anyio.create_task_group() as group,
            ):

                async def probe() -> None:
                    nonlocal ready
                    while now() < RUN:
                        answer = await http.get(f"{base}/readyz")
                        ready = answer.status_code == 200
                        probes.append((now(), answer.status_code))
                        await anyio.sleep(0.5)

                async def outage() -> None:
                    await anyio.sleep(OUTAGE[0])
                    emulator.fail_next(503, times=1_000_000)
                    await anyio.sleep(OUTAGE[1] - OUTAGE[0])
                    emulator.reset()
                    emulator.latency = 0.150

                async def call(at: float) -> None:
                    if not ready:
                        calls.append((at, "refused by the balancer", 0.0))
                        return
                    started = time.perf_counter()
                    result = await client.call_tool("get_message_session", {"id": session_id})
                    calls.append((at, "failed" if result.is_error else "ok", time.perf_counter() - started))

                group.start_soon(probe)
                group.start_soon(outage)
                while now() < RUN:
                    group.start_soon(call, now())
                    await anyio.sleep(0.1)
    refused = [at for at, outcome, _ in calls if outcome != "ok"]
    return {
        "machine": machine(),
        "outage_s": list(OUTAGE),
        "probes": len(probes),
        "probes_not_200": sum(1 for _, status in probes if status != 200),
        "calls": len(calls),
        "calls_not_ok": len(refused),
        "not_ok_window_s": [round(min(refused), 2), round(max(refused), 2)] if refused else None,
        "slowest_call_s": round(max(took for _, _, took in calls), 2),
    }


def main() -> None:
    figures = anyio.run(run)
    save_results("probes", figures)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
