"""Delete confirmation tokens: signed, expiring, bound to one tool and one exact target.

Nothing is stored server-side: a token carries its own claims and an HMAC-SHA256 over them, so any server
process that shares ``TEXTMAGIC_CONFIRMATION_SECRET`` accepts it and no other does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

_VERSION = "v1"
# Longer than any token this module issues, so garbage is refused before any parsing work.
_MAX_TOKEN_LENGTH = 512


class ConfirmationError(Exception):
    """The token does not authorise this delete; the message says why and what to do instead."""


@dataclass(frozen=True)
class Target:
    """What a delete acts on: an exact set of session ids, or every session (with the count previewed)."""

    ids: frozenset[int] = frozenset()
    all_count: int | None = None

    @classmethod
    def of_ids(cls, ids: Iterable[int]) -> Target:
        return cls(ids=frozenset(ids))

    @classmethod
    def everything(cls, count: int) -> Target:
        return cls(all_count=count)

    def digest(self) -> str:
        # A digest keeps tokens short however many ids they cover; order and duplicates cannot matter.
        canonical = (
            f"all:{self.all_count}" if self.all_count is not None else ",".join(map(str, sorted(self.ids)))
        )
        return _b64(hashlib.sha256(canonical.encode()).digest()[:18])


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime


class Confirmations:
    """Issues and checks confirmation tokens with one key."""

    def __init__(
        self, secret: bytes | None, *, ttl_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = secret if secret else secrets.token_bytes(32)
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(self, operation: str, target: Target) -> IssuedToken:
        expires = int(self._clock()) + self._ttl
        claims = _b64(json.dumps({"op": operation, "t": target.digest(), "exp": expires}).encode())
        token = f"{_VERSION}.{claims}.{self._sign(claims)}"
        return IssuedToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC))

    def verify(self, token: str, operation: str, target: Target) -> None:
        """Raise ConfirmationError unless ``token`` was issued here for ``operation`` on exactly ``target``."""
        again = "Call again without confirm to get a fresh preview and token, and show it to the user."
        # Tokens are ASCII by construction; anything else is tampered (a lone surrogate cannot even be encoded).
        parts = token.split(".") if len(token) <= _MAX_TOKEN_LENGTH and token.isascii() else []
        if len(parts) != 3 or parts[0] != _VERSION:
            raise ConfirmationError(f"The confirmation token is malformed. {again}")
        claims_part, signature = parts[1], parts[2]
        if not hmac.compare_digest(signature.encode(), self._sign(claims_part).encode()):
            raise ConfirmationError(
                "The confirmation token was not issued by this server (altered, or signed with another "
                f"TEXTMAGIC_CONFIRMATION_SECRET). {again}"
            )
        try:
            claims = json.loads(_unb64(claims_part))
            op, digest, expires = str(claims["op"]), str(claims["t"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ConfirmationError(f"The confirmation token is malformed. {again}") from None
        if op != operation:
            raise ConfirmationError(f"The confirmation token was issued for {op}, not {operation}. {again}")
        if not hmac.compare_digest(digest.encode(), target.digest().encode()):
            what = (
                "a different number of sessions on the account than there is now"
                if target.all_count is not None
                else "a different set of session ids (pass exactly the ids listed in the preview)"
            )
            raise ConfirmationError(f"The confirmation token was issued for {what}. {again}")
        if self._clock() >= expires:
            raise ConfirmationError(f"The confirmation token expired. {again}")

    def _sign(self, claims: str) -> str:
        return _b64(hmac.new(self._key, claims.encode(), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
