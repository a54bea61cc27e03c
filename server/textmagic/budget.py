"""How many requests to TextMagic one call may make: its budget, counted where requests are sent.

The account's rate limit is shared by every caller and by the customer's own sending, so no one question may
hold it for long. A call sets its budget once (``spend_at_most``); every request it makes then, retries
included, in any task it starts, takes one; past the budget, ``BudgetSpent`` is raised instead of sending.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from server.textmagic.errors import TextMagicError


class BudgetSpent(TextMagicError):
    """The call made as many requests to TextMagic as its budget allows; what it read so far stands."""


@dataclass
class Budget:
    limit: int
    used: int = 0

    @property
    def left(self) -> int:
        return max(0, self.limit - self.used)

    def spend(self) -> None:
        """Take one request, or raise BudgetSpent."""
        if self.used >= self.limit:
            raise BudgetSpent(
                f"This call made the {self.limit} requests to TextMagic one call may make (TEXTMAGIC_CALL_BUDGET)."
            )
        self.used += 1


_budget: ContextVar[Budget | None] = ContextVar("textmagic_budget", default=None)


def spend_at_most(limit: int) -> Budget:
    """From now on in this task (and tasks it starts), requests to TextMagic take from a budget of ``limit``."""
    budget = Budget(limit)
    _budget.set(budget)
    return budget


def current_budget() -> Budget | None:
    return _budget.get()
