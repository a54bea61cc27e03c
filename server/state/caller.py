"""Who is calling, and what they may use: the scopes an access token can grant, the caller a request carries
(the SDK's access token, set by the HTTP layer), and the tools a request was narrowed to."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from mcp.server.auth.middleware.auth_context import get_access_token

# What an access token may allow: reading (the read tools, resources, prompts, completion) and deleting.
READ_SCOPE = "sessions:read"
DELETE_SCOPE = "sessions:delete"
SCOPES = (READ_SCOPE, DELETE_SCOPE)


@dataclass(frozen=True)
class Caller:
    """Who is calling: over HTTP, the access token's subject (``token:`` and a fingerprint for a static token)
    and the client it was issued to; over stdio, nobody in particular (the person who started the server)."""

    subject: str | None = None
    client_id: str | None = None


def caller() -> Caller:
    token = get_access_token()
    if token is None:
        return Caller()
    return Caller(subject=token.subject, client_id=token.client_id or None)


# The tools the request at hand may see and call, when something narrowed them (over HTTP: the token's scopes,
# the path, headers); None: every served tool. Resources and prompts go with their tools.
allowed_tools: ContextVar[frozenset[str] | None] = ContextVar("allowed_tools", default=None)


def reachable(tools: frozenset[str]) -> bool:
    """Whether the request at hand may use one of ``tools`` (or anything, when nothing narrowed it)."""
    allowed = allowed_tools.get()
    return allowed is None or not tools or bool(tools & allowed)
