"""The server's Prometheus metrics, declared once, in the process's default registry.

Served at /metrics by the HTTP transport (behind its authentication). Labels take only bounded values: tool
names the server serves, HTTP methods and statuses, audit outcomes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "textmagic_mcp"
logger = logging.getLogger(__name__)

TOOL_CALLS = Counter(f"{PREFIX}_tool_calls", "Tool calls by tool and outcome.", ["tool", "outcome"])
TOOL_CALL_SECONDS = Histogram(
    f"{PREFIX}_tool_call_duration_seconds",
    "How long tool calls took.",
    ["tool"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
UPSTREAM_REQUESTS = Counter(
    f"{PREFIX}_textmagic_requests",
    "Requests to TextMagic by method and HTTP status ('connection' when it could not be sent, 'no_answer' when none came; 429 is the "
    "rate limit).",
    ["method", "status"],
)
UPSTREAM_SECONDS = Histogram(
    f"{PREFIX}_textmagic_request_duration_seconds",
    "How long TextMagic took to answer, from sending to the whole body.",
    ["method"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10, 30),
)
PACER_WAIT_SECONDS = Histogram(
    f"{PREFIX}_pacer_wait_seconds",
    "How long requests waited for a slot under the account's rate limit (0 when one was free).",
    buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
PACER_WAITING = Gauge(f"{PREFIX}_pacer_waiting", "Requests waiting for a slot under the rate limit now.")
PACER_RATE = Gauge(
    f"{PREFIX}_pacer_rate",
    "Requests a second this process allows itself now: the configured rate, lowered after 429s, and its share "
    "of it while Redis is unreachable.",
)
REDIS_UP = Gauge(f"{PREFIX}_redis_up", "1 while Redis (TEXTMAGIC_REDIS_URL) answers, 0 while it does not.")
DELETE_CALLS = Counter(
    f"{PREFIX}_delete_calls",
    "Delete calls by how they ended, as audited (preview, refused, declined, deleted, uncertain, failed, ...).",
    ["outcome"],
)
SESSIONS_DELETED = Counter(f"{PREFIX}_sessions_deleted", "Sessions TextMagic confirmed deleted.")
CONFIRMATIONS_REFUSED = Counter(
    f"{PREFIX}_confirmations_refused",
    "Confirmed deletes refused before anything was sent (a token expired, used, forged, or for another set).",
    ["tool"],
)

# A saturated rate limit is worth a line, not one per request.
SATURATION_WAIT = 1.0
SATURATION_LOG_INTERVAL = 30.0
_last_saturation_log = float("-inf")


def track_rate(current: Callable[[], float]) -> None:
    """The pacer rate gauge reads ``current`` at each scrape."""
    PACER_RATE.set_function(current)


def paced(waited: float) -> None:
    """A request got its slot after ``waited`` seconds: measured, and logged (at most every 30 s) when the wait
    shows the rate limit saturated."""
    global _last_saturation_log
    PACER_WAIT_SECONDS.observe(waited)
    now = time.monotonic()
    if waited >= SATURATION_WAIT and now - _last_saturation_log >= SATURATION_LOG_INTERVAL:
        _last_saturation_log = now
        logger.warning(
            "the account's rate limit is saturated: a request waited %.1f s for its turn (TEXTMAGIC_RATE_LIMIT; "
            "see %s_pacer_wait_seconds)",
            waited,
            PREFIX,
        )
