"""Used confirmation tokens: a confirmation works once, however often and however concurrently it is sent.

A token's nonce is claimed when its delete is about to be carried out; a second claim of it fails. An entry lives
as long as its token would. In one process the ledger is memory; replicas share one in Redis
(``server.shared``), where the claim is a single ``SET NX``, so exactly one of them wins it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class StateUnavailable(Exception):
    """State shared between replicas (used confirmations, previews) cannot be reached: a delete must not go ahead
    unguarded."""


class Ledger(Protocol):
    async def used(self, nonce: str) -> bool:
        """Whether the token with ``nonce`` was used (raises StateUnavailable)."""
        ...

    async def claim(self, nonce: str, expires: int) -> bool:
        """Mark the token used until ``expires`` (Unix time): True if this call did, False if it was used already
        (raises StateUnavailable)."""
        ...


class MemoryLedger:
    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._used: dict[str, float] = {}

    async def used(self, nonce: str) -> bool:
        return self._used.get(nonce, 0) > self._clock()

    async def claim(self, nonce: str, expires: int) -> bool:
        # No await between the check and the mark: two concurrent claims cannot both pass.
        now = self._clock()
        if self._used.get(nonce, 0) > now:
            return False
        self._used = {key: until for key, until in self._used.items() if until > now}
        self._used[nonce] = float(expires)
        return True
