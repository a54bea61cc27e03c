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


AGAIN = "Call again without confirm to get a fresh preview and token, and show it to the user."


class ConfirmationError(Exception):
    """The token does not authorise this delete; the message says why and what to do instead."""


@dataclass(frozen=True)
class Target:
    """What a delete acts on: an exact set of session ids, chosen by id or by a filter."""

    ids: frozenset[int] = frozenset()
    # For a delete by filter: the digest of the filter the ids were matched with.
    matched_by: str | None = None

    @classmethod
    def of_ids(cls, ids: Iterable[int]) -> Target:
        return cls(ids=frozenset(ids))

    @classmethod
    def matching(cls, filter_digest: str, ids: Iterable[int]) -> Target:
        return cls(ids=frozenset(ids), matched_by=filter_digest)

    def digest(self) -> str:
        # A digest keeps tokens short however many ids they cover; order and duplicates cannot matter.
        ids = ",".join(map(str, sorted(self.ids)))
        canonical = f"match:{self.matched_by}:{ids}" if self.matched_by is not None else ids
        return _b64(hashlib.sha256(canonical.encode()).digest()[:18])


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_at: datetime
    # Unique to this token: the key under which what its preview showed is kept.
    nonce: str


@dataclass(frozen=True)
class Claims:
    """What a genuine, unexpired token says."""

    operation: str
    target: str
    expires: int
    nonce: str
    # The ledger's generation it was issued under.
    epoch: str = ""


class Confirmations:
    """Issues and checks confirmation tokens with one key."""

    def __init__(
        self, secret: bytes | None, *, ttl_seconds: int, clock: Callable[[], float] = time.time
    ) -> None:
        self._key = secret if secret else secrets.token_bytes(32)
        self._ttl = ttl_seconds
        self._clock = clock

    def issue(
        self, operation: str, target: Target, subject: str | None = None, epoch: str = ""
    ) -> IssuedToken:
        """A token for ``operation`` on ``target``, which only ``subject`` (the caller) can confirm with, under the
        ledger generation ``epoch``."""
        expires = int(self._clock()) + self._ttl
        nonce = secrets.token_urlsafe(12)
        body = {
            "op": operation,
            "t": target.digest(),
            "exp": expires,
            "n": nonce,
            "s": _who(subject),
            "g": epoch,
        }
        claims = _b64(json.dumps(body).encode())
        token = f"{_VERSION}.{claims}.{self._sign(claims)}"
        return IssuedToken(token=token, expires_at=datetime.fromtimestamp(expires, UTC), nonce=nonce)

    def open(self, token: str, operation: str, subject: str | None = None) -> Claims:
        """The claims of ``token``, or ConfirmationError unless it was issued here for ``operation`` to
        ``subject``, and is unexpired."""
        # Tokens are ASCII by construction; anything else is tampered (a lone surrogate cannot even be encoded).
        parts = token.split(".") if len(token) <= _MAX_TOKEN_LENGTH and token.isascii() else []
        if len(parts) != 3 or parts[0] != _VERSION:
            raise ConfirmationError(f"The confirmation token is malformed. {AGAIN}")
        claims_part, signature = parts[1], parts[2]
        if not hmac.compare_digest(signature.encode(), self._sign(claims_part).encode()):
            raise ConfirmationError(
                "The confirmation token was not issued by this server (altered, or signed with another "
                f"TEXTMAGIC_CONFIRMATION_SECRET). {AGAIN}"
            )
        try:
            raw = json.loads(_unb64(claims_part))
            claims = Claims(str(raw["op"]), str(raw["t"]), int(raw["exp"]), str(raw["n"]), str(raw["g"]))
            issued_to = str(raw["s"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ConfirmationError(f"The confirmation token is malformed. {AGAIN}") from None
        if claims.operation != operation:
            raise ConfirmationError(
                f"The confirmation token was issued for {claims.operation}, not {operation}. {AGAIN}"
            )
        if not hmac.compare_digest(issued_to, _who(subject)):
            raise ConfirmationError(
                f"The confirmation token was issued to someone else: a preview is confirmed by whoever asked for it. {AGAIN}"
            )
        if self._clock() >= claims.expires:
            raise ConfirmationError(f"The confirmation token expired. {AGAIN}")
        return claims

    def verify(self, token: str, operation: str, target: Target, subject: str | None = None) -> Claims:
        """The claims of ``token``, or ConfirmationError unless it was issued here for ``operation`` on exactly
        ``target`` to ``subject``, and is unexpired."""
        claims = self.open(token, operation, subject)
        if not hmac.compare_digest(claims.target.encode(), target.digest().encode()):
            if target.matched_by is not None:
                what = "a different filter (pass the same filter arguments as the preview)"
            else:
                what = "a different set of session ids (pass exactly the ids listed in the preview)"
            raise ConfirmationError(f"The confirmation token was issued for {what}. {AGAIN}")
        return claims

    def _sign(self, claims: str) -> str:
        return _b64(hmac.new(self._key, claims.encode(), hashlib.sha256).digest())


def _who(subject: str | None) -> str:
    # A digest: the token, which the model sees, need not name the person.
    return _b64(hashlib.sha256((subject or "").encode()).digest()[:12])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
