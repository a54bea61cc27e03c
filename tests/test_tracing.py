"""OpenTelemetry: the SDK's span per message only when a tracer provider is installed to record it."""

from __future__ import annotations

import subprocess
import sys

from mcp.server._otel import OpenTelemetryMiddleware
from opentelemetry import trace

from server.app import build_server
from server.config import load_settings


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
