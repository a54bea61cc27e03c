"""The bottom layer: TextMagic's message-sessions API as typed calls. It knows nothing of MCP or of the tools.

``client`` sends the requests (retries in ``retry``, pacing in ``pacer``, a call's share in ``budget``), ``errors`` explains failures,
``models`` holds TextMagic's objects, ``untrusted`` makes third-party text safe to show.
"""

from server.textmagic.budget import Budget, BudgetSpent, current_budget, spend_at_most
from server.textmagic.client import TextMagicClient, track_statuses
from server.textmagic.errors import TextMagicError, UncertainOutcome
from server.textmagic.pacer import RateLimiter
from server.textmagic.retry import RetryPolicy

__all__ = [
    "Budget",
    "BudgetSpent",
    "RateLimiter",
    "RetryPolicy",
    "TextMagicClient",
    "TextMagicError",
    "UncertainOutcome",
    "current_budget",
    "spend_at_most",
    "track_statuses",
]
