"""Used confirmation tokens: a confirmation works once, however often and however concurrently it is sent.

A token's nonce is claimed when its delete is about to be carried out; a second claim of it fails. An entry lives
as long as its token would. A ledger has a generation (``epoch``), made once: tokens carry the one they were
issued under, and a ledger that lost its entries (a restart, Redis restored from an older snapshot or emptied)
has a new one, so that no token from before can pass as unused. In one process the ledger is memory; replicas share one in Redis
(``server.shared``), where the claim is a single ``SET NX``, so exactly one of them wins it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Protocol


class StateUnavailable(Exception):
    """State shared between replicas (used confirmations, previews) cannot be reached: a delete must not go ahead
    unguarded."""


class Ledger(Protocol):
    async def epoch(self) -> str:
        """This ledger's generation (raises StateUnavailable)."""
        ...

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
        # Gone with the process, and the entries with it.
        self._epoch = secrets.token_hex(8)

    async def epoch(self) -> str:
        return self._epoch

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
