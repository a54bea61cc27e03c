"""The outcome of a message, defined once: every description, report and per-session statistic uses these.

Delivered: ``d``. Failed: ``e``, ``f``, ``u``. Rejected: ``j``, and ``g`` (the recipient had unsubscribed) when
TextMagic returns it. Pending: ``q``, ``s``, ``r``, ``a``, ``b``, not final yet. Anything else: other. The
delivery rate is delivered / (delivered + failed + rejected): pending messages are reported beside it, never
counted in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from server.textmagic.models import MessageSession, SessionStat, parse_time

Bucket = Literal["delivered", "failed", "rejected", "pending", "other"]
BUCKETS: tuple[Bucket, ...] = ("delivered", "failed", "rejected", "pending", "other")
STATUSES: dict[Bucket, str] = {
    "delivered": "d",
    "failed": "efu",
    "rejected": "jg",
    "pending": "qsrab",
}
_BUCKET_OF = {status: bucket for bucket, statuses in STATUSES.items() for status in statuses}
# What "failed" means to someone retrying a send-out: every failed and rejected code.
FAILED_OR_REJECTED = tuple(STATUSES["failed"] + STATUSES["rejected"])

EXPLAINED = (
    "Outcomes: delivered d; failed e, f, u; rejected j (g: unsubscribed); pending q, s, r, a, b; anything else "
    "other. Final, never changing again: d, e, f, u, j, g; u means the status is unknown for good, not that it "
    "is still coming. delivery_rate = delivered / (delivered + failed + rejected); pending is not in it."
)
# Said wherever a reject reason code is shown: TextMagic names codes (a, b, c, l, ...) without their meaning.
REASONS_UNDOCUMENTED = "Reject reason codes are TextMagic's; it does not document what they mean."


def bucket(status: str | None) -> Bucket:
    return _BUCKET_OF.get(status or "", "other")


def not_started(session: MessageSession) -> bool:
    """Whether ``session`` starts later than now: its messages have no outcome yet, and it has cost nothing."""
    start = parse_time(session.start_time)
    return start is not None and start > datetime.now(UTC)


class Counts(BaseModel):
    """Messages by outcome, and the delivery rate, which is derived from them whenever counts are made: no code
    sets it, so it cannot go stale."""

    model_config = ConfigDict(frozen=True)

    # Required, so that a zero is said, never left out as a default.
    delivered: int
    failed: int
    rejected: int
    pending: int
    other: int
    # delivered / (delivered + failed + rejected), if any is: as the server's instructions define it.
    delivery_rate: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _rated(cls, data: Any) -> Any:
        if isinstance(data, dict):
            final = sum(int(data.get(name) or 0) for name in ("delivered", "failed", "rejected"))
            rate = round(int(data.get("delivered") or 0) / final, 4) if final else None
            return {**data, "delivery_rate": rate}
        return data

    @classmethod
    def of_stat(cls, stat: SessionStat) -> Counts:
        """From TextMagic's statistics: accepted, sent and scheduled are pending; what none names is other."""
        pending = stat.accepted + stat.sent + stat.scheduled
        named = stat.delivered + stat.failed + stat.rejected + pending
        return cls(
            delivered=stat.delivered,
            failed=stat.failed,
            rejected=stat.rejected,
            pending=pending,
            other=max(0, stat.all - named),
        )

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.rejected + self.pending + self.other


@dataclass
class Counter:
    """Messages by outcome and their cost, counted one message at a time."""

    buckets: dict[Bucket, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    cost: float = 0.0

    def add(self, status: str | None, price: float | None, *, counted: bool = True) -> None:
        """A message: its cost always (TextMagic charged it), its outcome if ``counted``."""
        if counted:
            self.buckets[bucket(status)] += 1
        self.cost += price or 0.0

    @property
    def total(self) -> int:
        return sum(self.buckets.values())
