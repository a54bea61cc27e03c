"""The serving process: the SDK's span per message only when a tracer provider records it, and a garbage collector
settled for a long run, and a start that loads only what it uses."""

from __future__ import annotations

import subprocess
import sys

from mcp.server._otel import OpenTelemetryMiddleware
from opentelemetry import trace

from server.app import build_server
from server.config import load_settings
from tests.conftest import shell_environment


def test_no_span_middleware_when_nothing_records_spans() -> None:
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    server = build_server(load_settings(sandbox=True))
    assert not any(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware)
    # The rest of the chain is untouched: request-state sealing still wraps every message.
    assert server.middleware


def test_spans_are_kept_when_a_tracer_provider_is_installed() -> None:
    # In a fresh interpreter: a tracer provider can be set only once per process.
    program = """
from mcp.server._otel import OpenTelemetryMiddleware
from opentelemetry import trace
trace.set_tracer_provider(trace.NoOpTracerProvider())
from server.app import build_server
from server.config import load_settings
server = build_server(load_settings(sandbox=True))
print(sum(isinstance(m, OpenTelemetryMiddleware) for m in server.middleware))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "1"


def test_a_served_process_leaves_its_start_up_objects_out_of_collections() -> None:
    # In a fresh interpreter: freezing is for the whole process.
    program = """
import gc
from server.app import build_server, settle_for_serving
from server.config import load_settings
build_server(load_settings(sandbox=True))
settle_for_serving()
print(gc.get_freeze_count(), gc.get_threshold()[0], gc.get_count()[2])
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    frozen, young_threshold, old = map(int, done.stdout.split())
    assert frozen > 20_000 and young_threshold == 10_000 and old == 0


def test_a_server_on_an_account_starts_without_the_sandbox_the_http_transport_or_httpcore2() -> None:
    # In a fresh interpreter, as the console script starts over stdio: what is not used yet is not imported,
    # because clients spawn the server at launch and wait for it. httpcore2 comes with the first request.
    program = """
import sys
from server.cli import _build
from server.config import load_settings
_build(load_settings(username="u", api_key="k"))
print(sorted(m for m in sys.modules if m.startswith(("server.sandbox", "server.http", "server.network", "httpcore2"))))
"""
    done = subprocess.run(
        [sys.executable, "-c", program],
        env=shell_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"
