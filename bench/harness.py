"""Shared by the benchmark scripts: the emulator on loopback, the server as a subprocess, memory readings."""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import uvicorn

from server.sandbox import Emulator
from server.wiring.http import listening_socket

# The tests' reader of the table text, from the checkout this runs in.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.table import expand, without_nulls

__all__ = ["expand", "without_nulls"]

USERNAME = "bench-user"
API_KEY = "bench-key"
TOKEN = "bench-token"
SCRIPT = str(Path(sys.executable).with_name("textmagic-sessions-mcp"))


@dataclass
class Served:
    emulator: Emulator
    url: str


@contextmanager
def emulator_on_loopback(**options: Any) -> Iterator[Served]:
    """The emulator served by uvicorn in a thread; listening before this yields (no wait needed)."""
    emulator = Emulator(username=USERNAME, api_key=API_KEY, **options)
    sock = listening_socket("127.0.0.1", 0)
    # asyncio's own loop, installed or not uvloop: the stand-in for TextMagic must not get faster with it.
    # Idle connections are kept as long as nginx keeps them by default (uvicorn's own default is 5 s).
    config = uvicorn.Config(
        emulator.app,
        loop="asyncio",
        log_level="warning",
        lifespan="off",
        log_config=None,
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield Served(emulator, f"http://127.0.0.1:{sock.getsockname()[1]}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def server_environment(textmagic_url: str, **extra: str) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEXTMAGIC_")}
    return clean | {
        "TEXTMAGIC_USERNAME": USERNAME,
        "TEXTMAGIC_API_KEY": API_KEY,
        "TEXTMAGIC_BASE_URL": textmagic_url,
        "TEXTMAGIC_LOG_LEVEL": "WARNING",
        **extra,
    }


@dataclass
class HttpServer:
    process: subprocess.Popen[str]
    url: str

    def rss_mb(self) -> float:
        return psutil.Process(self.process.pid).memory_info().rss / 2**20


@contextmanager
def http_server(textmagic_url: str, **extra: str) -> Iterator[HttpServer]:
    """The installed server serving HTTP on a free loopback port, until the block ends."""
    env = server_environment(textmagic_url, **({"TEXTMAGIC_MCP_TOKENS": TOKEN} | extra))
    process = subprocess.Popen(
        [SCRIPT, "--transport", "http", "--port", "0"], env=env, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    url = ""
    for line in process.stderr:
        if "serving MCP at " in line:
            url = line.split("serving MCP at ")[1].strip()
            break
    if not url:
        raise RuntimeError("the server did not start")
    threading.Thread(target=shutil.copyfileobj, args=(process.stderr, sys.stderr), daemon=True).start()
    try:
        yield HttpServer(process, url)
    finally:
        process.terminate()
        process.wait(timeout=60)


RESULTS = Path(__file__).parent / "results"


def save_results(name: str, figures: dict[str, Any]) -> None:
    """``figures`` as bench/results/``name``.json, with the machine they were measured on inside."""
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def spread(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median": statistics.median(ordered),
        "p10": ordered[len(ordered) // 10],
        "p90": ordered[(len(ordered) * 9) // 10],
        "n": len(ordered),
    }
