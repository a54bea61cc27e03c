"""The outcome of a message, defined once: every description, report and per-session statistic uses these.

Delivered: ``d``. Failed: ``e``, ``f``, ``u``. Rejected: ``j``, and ``g`` (the recipient had unsubscribed) when
TextMagic returns it. Pending: ``q``, ``s``, ``r``, ``a``, ``b``, not final yet. Anything else: other. The
delivery rate is delivered / (delivered + failed + rejected): pending messages are reported beside it, never
counted in it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from server.textmagic.models import SessionStat

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
# The same, as TextMagic's status filter takes them (it does not list g).
FAILURE_FILTER = ["f", "e", "u", "j"]

EXPLAINED = (
    "Outcomes: delivered d; failed e, f, u; rejected j (g: unsubscribed); pending q, s, r, a, b (not final); "
    "anything else other. delivery_rate = delivered / (delivered + failed + rejected); pending is not in it."
)


def bucket(status: str | None) -> Bucket:
    return _BUCKET_OF.get(status or "", "other")


class Compact(BaseModel):
    """A result sent without nulls (``tools.render`` leaves them out): a field with nothing to say is absent, so
    its schema names the one type it has when present."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        for field in handler.resolve_ref_schema(schema).get("properties", {}).values():
            options = field.get("anyOf")
            if isinstance(options, list) and {"type": "null"} in options:
                rest = [option for option in options if option != {"type": "null"}]
                del field["anyOf"]
                field.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
                field.pop("default", None)
        return schema


class Counts(Compact):
    """Messages by outcome, and the delivery rate."""

    # Required, so that a zero is said, never left out as a default.
    delivered: int
    failed: int
    rejected: int
    pending: int
    other: int
    delivery_rate: float | None = Field(
        None, description="delivered / (delivered + failed + rejected), if any is"
    )

    @classmethod
    def of(cls, statuses: Iterable[str | None]) -> Counts:
        counts = cls.zero()
        for status in statuses:
            counts.add(status)
        return counts.rated()

    @classmethod
    def zero(cls) -> Counts:
        return cls(delivered=0, failed=0, rejected=0, pending=0, other=0, delivery_rate=None)

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
            delivery_rate=None,
        ).rated()

    def add(self, status: str | None) -> None:
        name = bucket(status)
        setattr(self, name, getattr(self, name) + 1)

    def rated(self) -> Counts:
        final = self.delivered + self.failed + self.rejected
        self.delivery_rate = round(self.delivered / final, 4) if final else None
        return self

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.rejected + self.pending + self.other
