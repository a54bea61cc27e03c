"""OpenTelemetry spans for what a call waits on: TextMagic's requests and Redis's commands.

Through the API only: with no tracer provider configured (``opentelemetry-instrument`` configures one) a span
costs nothing. ``flush`` at shutdown hands the spans still buffered to the exporter, which a worker process of
``uvicorn --workers`` would otherwise lose: it ends without running exit handlers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from server import __version__

_tracer = trace.get_tracer("textmagic-sessions-mcp", __version__)
FLUSH_TIMEOUT_MS = 5000


@contextmanager
def span(name: str, system: str, **attributes: str | int) -> Iterator[Span]:
    """A client span around one request to ``system`` (``textmagic``, ``redis``)."""
    with _tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes={"peer.service": system, **attributes}
    ) as current:
        yield current


def flush() -> None:
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if callable(force_flush):
        force_flush(FLUSH_TIMEOUT_MS)
