"""Who is calling over HTTP: bearer tokens checked, into the SDK's ``AccessToken`` (subject, client, scopes).

Two kinds of token, alone or together: the server's own static tokens (TEXTMAGIC_MCP_TOKENS, every scope), and
OAuth access tokens an authorization server issued for this resource (TEXTMAGIC_OAUTH_ISSUER): JWTs checked
against the issuer's published keys, or opaque tokens asked about at its introspection endpoint (RFC 7662). A
token is refused unless it names this resource as its audience: one minted for another API is never accepted,
nor passed on. The access token itself is never logged, shown or kept beyond its check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
import jwt
from mcp.server.auth.provider import AccessToken

from server.state.caller import DELETE_SCOPE, READ_SCOPE
from server.state.settings import Settings

logger = logging.getLogger(__name__)

# Only signatures whose key the issuer publishes and cannot be forged with it: never "none", never HMAC.
ASYMMETRIC = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
# Clocks of the issuer and of this server may differ this much.
LEEWAY_SECONDS = 60
# What the issuer's documents may cost: a few keys, a metadata document.
MAX_DOCUMENT_BYTES = 256 * 1024
FETCH_TIMEOUT = 5.0
# Keys are fetched again after this long, or at most this often for a key id they do not hold.
KEYS_MAX_AGE = 3600.0
KEYS_MIN_REFETCH = 30.0
# Introspection answers are kept for their token's remaining life, at most this long.
INTROSPECTION_CACHE_SECONDS = 60.0
INTROSPECTION_CACHE_SIZE = 10_000
STATIC_CLIENT = "static-token"


class TokenRefused(Exception):
    """The token does not authorise calls to this server; the message says why and what to do."""


class IssuerUnavailable(Exception):
    """The authorization server cannot be asked (its metadata, keys or introspection): temporary."""


def static_subject(token: str) -> str:
    """A static token's subject: ``token:`` and a short fingerprint, so records tell tokens apart without it."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass
class AccessTokens:
    """Checks bearer tokens for this server: a TokenVerifier of the SDK's, with reasons when it refuses."""

    static: Sequence[str]
    issuer: str | None = None
    audiences: Sequence[str] = ()
    introspection_url: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    _documents: _Documents | None = field(default=None, init=False, repr=False)
    _introspected: OrderedDict[str, tuple[float, AccessToken | None]] = field(
        default_factory=OrderedDict, init=False, repr=False
    )

    @classmethod
    def of(cls, settings: Settings) -> AccessTokens:
        secret = settings.oauth_client_secret
        resource = settings.resource_url
        audiences = [settings.oauth_audience] if settings.oauth_audience else [resource] if resource else []
        return cls(
            static=[token.get_secret_value() for token in settings.mcp_tokens],
            issuer=settings.oauth_issuer,
            audiences=audiences,
            introspection_url=str(settings.oauth_introspection_url)
            if settings.oauth_introspection_url
            else None,
            client_id=settings.oauth_client_id,
            client_secret=secret.get_secret_value() if secret else None,
        )

    async def verify_token(self, token: str) -> AccessToken | None:
        """The SDK's TokenVerifier hook: the token's AccessToken, or None when it is refused."""
        try:
            return await self.check(token, self.audiences)
        except (TokenRefused, IssuerUnavailable):
            return None

    async def check(self, token: str, audiences: Sequence[str]) -> AccessToken:
        """The AccessToken of ``token``, which must name one of ``audiences`` unless it is a static token.

        Raises:
            TokenRefused: naming why (expired, another audience, ...).
            IssuerUnavailable: the authorization server could not be asked; try again later.
        """
        candidate = token.encode()
        # Every static token is compared, each in constant time, so timing tells nothing about any of them.
        if any([hmac.compare_digest(candidate, known.encode()) for known in self.static]):
            return AccessToken(
                token="",
                client_id=STATIC_CLIENT,
                scopes=[READ_SCOPE, DELETE_SCOPE],
                subject=static_subject(token),
            )
        if self.issuer is None:
            raise TokenRefused(
                "Send one of the server's tokens (TEXTMAGIC_MCP_TOKENS) as 'Authorization: Bearer <token>'."
            )
        if token.count(".") == 2:
            return await self._jwt(token, audiences)
        if self.introspection_url is not None:
            return await self._introspect(token, audiences)
        raise TokenRefused("The access token is not a JWT, and this server checks JWT access tokens only.")

    async def _jwt(self, token: str, audiences: Sequence[str]) -> AccessToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenRefused("The access token is malformed.") from None
        algorithm = header.get("alg")
        if algorithm not in ASYMMETRIC:
            raise TokenRefused(
                f"Access tokens must be signed with the issuer's key; {str(algorithm)[:16]!r} is not accepted."
            )
        key = await self._documents_of().key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[algorithm],
                audience=list(audiences),
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRefused(
                "The access token expired; get a new one from the authorization server."
            ) from None
        except jwt.ImmatureSignatureError:
            raise TokenRefused("The access token is not valid yet (nbf or iat lies ahead).") from None
        except jwt.InvalidAudienceError:
            raise TokenRefused(
                f"The access token was issued for another resource; this server accepts tokens for {_listed(audiences)} "
                "(ask the authorization server with that resource indicator)."
            ) from None
        except jwt.InvalidIssuerError:
            raise TokenRefused(
                f"The access token was issued by another issuer; this server trusts {self.issuer}."
            ) from None
        except jwt.PyJWTError:
            raise TokenRefused("The access token's signature or claims are invalid.") from None
        return _access_token(claims, _first_audience(claims.get("aud"), audiences))

    async def _introspect(self, token: str, audiences: Sequence[str]) -> AccessToken:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._introspected.get(key)
        if cached is not None and cached[0] > now:
            if cached[1] is None:
                raise TokenRefused("The access token is not active.")
            return cached[1]
        assert self.introspection_url is not None and self.client_id and self.client_secret
        answer = await _fetch_json(
            self.introspection_url, data={"token": token}, auth=(self.client_id, self.client_secret)
        )
        accepted: AccessToken | None = None
        expires = now + INTROSPECTION_CACHE_SECONDS
        if answer.get("active") is True:
            claims = {k: v for k, v in answer.items() if k != "active"}
            if claims.get("iss") not in (None, self.issuer):
                raise TokenRefused(
                    f"The access token was issued by another issuer; this server trusts {self.issuer}."
                )
            audience = claims.get("aud")
            if audience is not None and _first_audience(audience, audiences) is None:
                raise TokenRefused(
                    f"The access token was issued for another resource; this server accepts {_listed(audiences)}."
                )
            if isinstance(claims.get("exp"), int):
                expires = min(expires, now + claims["exp"] - time.time())
            accepted = _access_token(
                claims, _first_audience(audience, audiences) or (audiences[0] if audiences else None)
            )
        self._introspected[key] = (expires, accepted)
        while len(self._introspected) > INTROSPECTION_CACHE_SIZE:
            self._introspected.popitem(last=False)
        if accepted is None:
            raise TokenRefused("The access token is not active.")
        return accepted

    def _documents_of(self) -> _Documents:
        if self._documents is None:
            assert self.issuer is not None
            self._documents = _Documents(self.issuer)
        return self._documents


def _access_token(claims: dict[str, Any], resource: str | None) -> AccessToken:
    scopes = claims.get("scope", claims.get("scp", ""))
    listed = (
        scopes.split()
        if isinstance(scopes, str)
        else [str(s) for s in scopes]
        if isinstance(scopes, list)
        else []
    )
    client = claims.get("client_id") or claims.get("azp") or ""
    expires = claims.get("exp")
    subject = claims.get("sub")
    return AccessToken(
        token="",
        client_id=str(client),
        scopes=listed,
        expires_at=expires if isinstance(expires, int) else None,
        resource=resource,
        subject=str(subject) if subject is not None else None,
        claims={"iss": claims.get("iss")},
    )


def _first_audience(audience: Any, accepted: Sequence[str]) -> str | None:
    named = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else []
    return next((a for a in named if a in accepted), None)


def _listed(audiences: Sequence[str]) -> str:
    return " or ".join(audiences) or "this server's resource URL"


class _Documents:
    """The issuer's metadata (RFC 8414, or OpenID discovery) and signing keys, fetched when first needed and
    kept; fetched again for a key id they do not hold, at most every KEYS_MIN_REFETCH seconds."""

    def __init__(self, issuer: str) -> None:
        self._issuer = issuer
        self._jwks_uri: str | None = None
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = anyio.Lock()

    async def key(self, kid: Any) -> Any:
        wanted = kid if isinstance(kid, str) else None
        async with self._lock:
            age = anyio.current_time() - self._fetched_at
            if age > KEYS_MAX_AGE or (wanted not in self._keys and age > KEYS_MIN_REFETCH):
                await self._fetch()
        if wanted in self._keys:
            return self._keys[wanted].key
        if wanted is None and len(self._keys) == 1:
            return next(iter(self._keys.values())).key
        raise TokenRefused("The access token was signed with a key the issuer does not publish.")

    async def _fetch(self) -> None:
        if self._jwks_uri is None:
            self._jwks_uri = await self._discover()
        document = await _fetch_json(self._jwks_uri)
        keys: dict[str | None, jwt.PyJWK] = {}
        for entry in document.get("keys", [])[:50]:
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue
            keys[entry.get("kid")] = key
        self._keys = keys
        self._fetched_at = anyio.current_time()

    async def _discover(self) -> str:
        parts = urllib.parse.urlsplit(self._issuer)
        path = parts.path.rstrip("/")
        root = f"{parts.scheme}://{parts.netloc}"
        for url in (
            f"{root}/.well-known/oauth-authorization-server{path}",
            f"{root}{path}/.well-known/openid-configuration",
        ):
            try:
                metadata = await _fetch_json(url)
            except IssuerUnavailable:
                continue
            if metadata.get("issuer") == self._issuer and isinstance(metadata.get("jwks_uri"), str):
                return str(metadata["jwks_uri"])
        raise IssuerUnavailable(f"no metadata naming the issuer {self._issuer} with its keys (jwks_uri)")


async def _fetch_json(
    url: str, *, data: dict[str, str] | None = None, auth: tuple[str, str] | None = None
) -> dict[str, Any]:
    """One document from the authorization server, bounded in size and time."""
    try:
        async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=False, auth=auth) as http:
            request = http.build_request("POST" if data is not None else "GET", url, data=data)
            response = await http.send(request, stream=True)
            try:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise IssuerUnavailable(f"{url} answered with more than {MAX_DOCUMENT_BYTES} bytes")
            finally:
                await response.aclose()
    except httpx2.HTTPError as exc:
        raise IssuerUnavailable(f"{url} could not be reached ({type(exc).__name__})") from None
    if response.status_code != 200:
        raise IssuerUnavailable(f"{url} answered HTTP {response.status_code}")
    try:
        document = json.loads(body)
    except ValueError:
        raise IssuerUnavailable(f"{url} did not answer JSON") from None
    if not isinstance(document, dict):
        raise IssuerUnavailable(f"{url} did not answer a JSON object")
    return document
