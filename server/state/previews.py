"""What a delete preview showed, kept for its confirmation: the exact set of session ids, under the token's nonce.

A preview of a delete by filter may match thousands of sessions, too many ids for a token the model must pass
back. The set stays here instead, as long as the token lives; the token carries a digest of it, so the
confirmation deletes exactly what was shown. In one process it is kept in memory.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Protocol

# Previews kept at once; the oldest make room. Each is at most TEXTMAGIC_SCAN_LIMIT ids.
MAX_PREVIEWS = 1000


class Previews(Protocol):
    async def put(self, key: str, ids: Iterable[int]) -> None: ...

    async def get(self, key: str) -> frozenset[int] | None: ...


class PreviewStore:
    def __init__(self, ttl_seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl_seconds
        self._clock = clock
        self._kept: OrderedDict[str, tuple[float, frozenset[int]]] = OrderedDict()

    async def put(self, key: str, ids: Iterable[int]) -> None:
        now = self._clock()
        while self._kept and (len(self._kept) >= MAX_PREVIEWS or next(iter(self._kept.values()))[0] <= now):
            self._kept.popitem(last=False)
        self._kept[key] = (now + self._ttl, frozenset(ids))

    async def get(self, key: str) -> frozenset[int] | None:
        kept = self._kept.get(key)
        if kept is None or kept[0] <= self._clock():
            return None
        return kept[1]
