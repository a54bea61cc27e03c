"""What a delete preview showed, kept for its confirmation: each session's id and start time, under the token's
nonce.

A preview of a delete by filter may match thousands of sessions, too many for a token the model must pass
back. The set stays here instead, as long as the token lives; the token carries a digest of the ids, so the
confirmation deletes exactly what was shown, and the start times let it leave alone an id that names another
session by then. In one process it is kept in memory; replicas share it through Redis.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

# Previews kept at once; the oldest make room. Each is at most TEXTMAGIC_SCAN_LIMIT ids.
MAX_PREVIEWS = 1000


# A previewed session's id, and its start time as TextMagic gave it ("" for none).
Shown = dict[int, str]


class Previews(Protocol):
    async def put(self, key: str, shown: Shown) -> None: ...

    async def get(self, key: str) -> Shown | None: ...


class PreviewStore:
    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._kept: OrderedDict[str, tuple[float, Shown]] = OrderedDict()

    async def put(self, key: str, shown: Shown) -> None:
        now = self._clock()
        while self._kept and (len(self._kept) >= MAX_PREVIEWS or next(iter(self._kept.values()))[0] <= now):
            self._kept.popitem(last=False)
        self._kept[key] = (now + self._ttl, dict(shown))

    async def get(self, key: str) -> Shown | None:
        kept = self._kept.get(key)
        if kept is None or kept[0] <= self._clock():
            return None
        return kept[1]
