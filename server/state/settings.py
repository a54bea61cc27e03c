"""Configuration: environment variables first (``TEXTMAGIC_*``), command-line overrides on top."""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from server.textmagic.urls import is_loopback

DEFAULT_BASE_URL = "https://rest.textmagic.com"


class ConfigError(Exception):
    """The configuration cannot work; the message names the variables to fix and never their secret values."""


class Settings(BaseSettings):
    """Every setting, read from ``TEXTMAGIC_<NAME>`` environment variables."""

    model_config = SettingsConfigDict(
        env_prefix="TEXTMAGIC_", env_ignore_empty=True, frozen=True, extra="ignore"
    )

    username: str | None = Field(None, description="TextMagic account username.")
    api_key: SecretStr | None = Field(None, description="TextMagic API v2 key of that user.")
    base_url: AnyHttpUrl = Field(AnyHttpUrl(DEFAULT_BASE_URL), description="TextMagic REST API root.")
    timeout: float = Field(30.0, gt=0, le=600, description="Seconds to wait for TextMagic on each request.")
    keepalive: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="Seconds an idle connection to TextMagic is kept for the next call (0: a new one each time).",
    )
    sandbox: bool = Field(
        False, description="Serve the built-in TextMagic emulator instead of a real account."
    )
    allow_delete_all: bool = Field(False, description="Allow delete_message_sessions_bulk with all=true.")
    confirmation_secret: SecretStr | None = Field(
        None,
        description="HMAC key for delete confirmation tokens (32 bytes at least); random per process when unset.",
    )
    confirmation_ttl: int = Field(
        600, ge=10, le=86_400, description="Seconds a confirmation token stays valid."
    )
    require_human_confirmation: bool = Field(
        False, description="Refuse deletes on clients that cannot ask the user (no elicitation)."
    )
    read_only: bool = Field(False, description="Serve only the read tools; delete calls are refused.")
    tools: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        None, description="Comma-separated names of the only tools to serve."
    )
    instance: str = Field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}",
        min_length=1,
        max_length=120,
        description="Name of this replica in audit records (default: host and process).",
    )
    audit_log: Path | None = Field(
        None, description="File that every delete attempt is appended to (JSON lines)."
    )
    reconcile_interval: float = Field(
        600.0,
        ge=0,
        le=86_400,
        description="Seconds between looks at TextMagic for deletes this replica audited as sent but not how they "
        "ended (0: only at start).",
    )
    rate_limit: float = Field(
        40.0,
        ge=0.1,
        le=1000,
        description="Requests per second to TextMagic, for the whole process (or all replicas, with Redis); a "
        "fifth of the account's 50 is left for its own sending, and a 429 slows it further.",
    )
    retry_budget: float = Field(
        10.0, ge=0, le=300, description="Seconds a call may spend retrying TextMagic's transient failures."
    )
    retry_attempts: int = Field(
        5, ge=1, le=20, description="Attempts per TextMagic request, the first included."
    )
    allow_insecure_http: bool = Field(
        False,
        description="Allow an http:// TEXTMAGIC_BASE_URL off loopback (credentials would go unencrypted).",
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis that replicas share used confirmations, previews and the rate limit through."
    )
    timezone: str = Field(
        "UTC", min_length=1, description="IANA time zone in which dates given to the tools are read."
    )
    call_budget: int = Field(
        3000,
        ge=10,
        le=1_000_000,
        description="Requests to TextMagic one read call may make; beyond it the answer says what it covered.",
    )
    delete_recheck: float = Field(
        3.0,
        ge=0,
        le=60,
        description="Seconds after which a delete TextMagic did not confirm, and that left its sessions, is looked "
        "at again: TextMagic may carry it out late.",
    )
    calls_per_caller: int = Field(
        4, ge=1, le=100, description="Tool calls one caller may have running at once over HTTP."
    )
    cache_mb: int = Field(
        256,
        ge=0,
        le=65_536,
        description="Megabytes the store of settled sessions may hold (0: none); the least recently used go first.",
    )
    cache_path: Path | None = Field(
        None,
        description="SQLite file for the store of settled sessions, kept across restarts (default: memory).",
    )
    cache_max_age: float = Field(
        86_400,
        ge=60,
        le=30 * 86_400,
        description="Seconds after which a stored session is read again from TextMagic.",
    )
    cache_fresh: bool = Field(
        False, description="Read everything from TextMagic, as if the store were empty (it is still filled)."
    )
    scan_limit: int = Field(
        10_000, ge=100, le=1_000_000, description="Sessions a filter may read before it stops, newest first."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Level of stderr logs."
    )
    transport: Literal["stdio", "http"] = Field("stdio", description="How MCP clients reach the server.")
    host: str = Field("127.0.0.1", min_length=1, description="Address the HTTP transport binds to.")
    port: int = Field(8000, ge=0, le=65_535, description="Port of the HTTP transport; 0 picks a free one.")
    mcp_tokens: Annotated[tuple[SecretStr, ...], NoDecode] = Field(
        (), description="Bearer tokens HTTP clients must present (comma-separated)."
    )
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Host headers accepted over HTTP, besides the loopback names (comma-separated)."
    )
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="Origin headers accepted over HTTP, besides loopback origins (comma-separated)."
    )
    # Kept as written: an issuer is compared as a string (RFC 8414), where a trailing slash makes another one.
    oauth_issuer: str | None = Field(
        None,
        description="Issuer URL of the OAuth authorization server whose access tokens HTTP clients present.",
    )
    public_url: str | None = Field(
        None, description="Base URL clients use to reach this server, e.g. https://mcp.example.com (OAuth)."
    )
    oauth_audience: str | None = Field(
        None, min_length=1, description="Audience access tokens must name; default: the resource URL (OAuth)."
    )
    oauth_introspection_url: AnyHttpUrl | None = Field(
        None, description="RFC 7662 introspection endpoint, for access tokens that are not JWTs (OAuth)."
    )
    oauth_client_id: str | None = Field(
        None, min_length=1, description="This server's client id at the introspection endpoint."
    )
    oauth_client_secret: SecretStr | None = Field(
        None, description="This server's client secret at the introspection endpoint."
    )

    @field_validator("tools", "mcp_tokens", "allowed_hosts", "allowed_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            names = tuple(name.strip() for name in value.split(",") if name.strip())
            if not names:
                raise ValueError("lists nothing; give values separated by commas, or leave it unset")
            return names
        return value

    @field_validator("oauth_issuer", "public_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urllib.parse.urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password:
            raise ValueError(
                "must be an https:// URL with a host and no credentials, such as https://auth.example.com"
            )
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, name: str) -> str:
        if not known_timezone(name):
            raise ValueError(
                "is not a known IANA time zone; use a name such as Europe/Berlin or America/New_York"
            )
        return name

    @field_validator("base_url")
    @classmethod
    def _plain_base_url(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        # Credentials in the URL would leak into logs and error messages; they belong in their own variables.
        if url.username or url.password:
            raise ValueError("must not contain credentials; use TEXTMAGIC_USERNAME and TEXTMAGIC_API_KEY")
        if url.query or url.fragment:
            raise ValueError(
                "must be a plain URL such as https://rest.textmagic.com, without query or fragment"
            )
        return url

    @field_validator("username", "api_key")
    @classmethod
    def _no_spaces_around(cls, value: str | SecretStr | None) -> str | SecretStr | None:
        # A blank one is judged with the sandbox in view (_credentials_or_sandbox).
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if text is not None and text.strip() and text != text.strip():
            raise ValueError("has spaces around it; copy it again without them")
        return value

    @field_validator("confirmation_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < 32:
            raise ValueError(
                "is too short to sign confirmations: give 32 bytes at least, e.g. the output of "
                "`openssl rand -hex 32`"
            )
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urllib.parse.urlsplit(value.get_secret_value()).scheme not in REDIS_SCHEMES:
            raise ValueError("must be a redis://, rediss:// or unix:// URL, such as redis://127.0.0.1:6379/0")
        return value

    @model_validator(mode="after")
    def _encrypted_off_loopback(self) -> Settings:
        url = self.base_url
        if url.scheme == "http" and not is_loopback(url.host or "") and not self.allow_insecure_http:
            raise ValueError(
                "TEXTMAGIC_BASE_URL: plain http:// would send the API key unencrypted to a host that is not this "
                "machine. Use https://, or set TEXTMAGIC_ALLOW_INSECURE_HTTP=true if that is what you want"
            )
        return self

    @model_validator(mode="after")
    def _credentials_or_sandbox(self) -> Settings:
        # The sandbox uses none: blank ones (a bundle's unset fields) are no mistake there.
        if self.sandbox:
            return self
        given = {
            "TEXTMAGIC_USERNAME": self.username,
            "TEXTMAGIC_API_KEY": self.api_key.get_secret_value() if self.api_key is not None else None,
        }
        blank = [name for name, text in given.items() if text is not None and not text.strip()]
        if blank:
            raise ValueError(
                "; ".join(
                    f"{name}: is blank; set it to the account's username and API v2 key" for name in blank
                )
            )
        missing = [name for name, text in given.items() if not text]
        if missing:
            raise ValueError(
                f"TextMagic credentials are missing: set {' and '.join(missing)} (an API v2 key, created in "
                "TextMagic's web app under Settings > API), or start with --sandbox (TEXTMAGIC_SANDBOX=true) "
                "to try the built-in emulator without an account"
            )
        return self

    @model_validator(mode="after")
    def _replicas_share_a_secret(self) -> Settings:
        if self.redis_url is not None and self.confirmation_secret is None:
            raise ValueError(
                "TEXTMAGIC_REDIS_URL is set (replicas sharing state) without TEXTMAGIC_CONFIRMATION_SECRET: a preview "
                "made on one replica could not be confirmed on another. Set the same secret on every replica, "
                "e.g. the output of `openssl rand -hex 32`"
            )
        return self

    @model_validator(mode="after")
    def _oauth_complete(self) -> Settings:
        if self.oauth_issuer is None:
            return self
        if self.public_url is None:
            raise ValueError(
                "TEXTMAGIC_OAUTH_ISSUER is set without TEXTMAGIC_PUBLIC_URL: set it to the base URL clients use to "
                "reach this server, such as https://mcp.example.com (the resource its tokens are issued for is "
                "that URL plus /mcp)"
            )
        urls = (
            ("OAUTH_ISSUER", urllib.parse.urlsplit(self.oauth_issuer)),
            ("OAUTH_INTROSPECTION_URL", urllib.parse.urlsplit(str(self.oauth_introspection_url or ""))),
        )
        for name, url in urls:
            if url.scheme == "http" and not is_loopback(url.hostname or ""):
                raise ValueError(
                    f"TEXTMAGIC_{name}: plain http:// to a host that is not this machine would let anyone on the way "
                    "forge the keys or answers that tokens are checked with; use https://"
                )
        if self.oauth_introspection_url is not None and not (
            self.oauth_client_id and self.oauth_client_secret
        ):
            raise ValueError(
                "TEXTMAGIC_OAUTH_INTROSPECTION_URL needs TEXTMAGIC_OAUTH_CLIENT_ID and TEXTMAGIC_OAUTH_CLIENT_SECRET: "
                "the credentials this server introspects tokens with"
            )
        public = urllib.parse.urlsplit(self.public_url)
        if public.path not in ("", "/") or public.query or public.fragment:
            raise ValueError(
                "TEXTMAGIC_PUBLIC_URL must be a base URL such as https://mcp.example.com, without a path, query or "
                "fragment: the server adds /mcp"
            )
        return self

    @property
    def resource_url(self) -> str | None:
        """The protected resource clients' tokens are issued for: the public URL plus /mcp (OAuth)."""
        return f"{self.public_url.rstrip('/')}/mcp" if self.public_url else None

    @property
    def authenticates(self) -> bool:
        """Whether HTTP clients must present a credential: what serving beyond loopback requires."""
        return bool(self.mcp_tokens) or self.oauth_issuer is not None

    @property
    def api_root(self) -> str:
        return str(self.base_url).rstrip("/")


def load_settings(**overrides: Any) -> Settings:
    """Read the environment, apply ``overrides`` (from the command line), and explain any problem.

    Raises:
        ConfigError: naming each offending variable and what it needs; input values are never echoed,
            so a mistyped key cannot end up in a terminal or a log.
    """
    try:
        return Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_input=False, include_url=False):
            field = ".".join(str(part) for part in error["loc"])
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"TEXTMAGIC_{field.upper()}: {message}" if field else message)
        raise ConfigError("; ".join(problems)) from None


# What httpx2 can carry requests through: HTTP proxies (CONNECT for https://) and SOCKS5 (with socksio).
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
REDIS_SCHEMES = ("redis", "rediss", "unix")


def environment_proxy(url: str) -> str | None:
    """The proxy the environment names for requests to ``url``, or None to connect directly.

    Read as curl and httpx read it: ``https_proxy`` or ``http_proxy`` by the URL's scheme, else ``all_proxy``
    (lower-case names first, then upper-case); ``no_proxy`` lists hosts and domains reached directly, ``*``
    all of them. Loopback is always reached directly: the emulator, or a tunnel on this machine. An HTTP
    proxy (http:// or https://) or a SOCKS5 one (socks5:// or socks5h://; either way it resolves host names).

    Raises:
        ConfigError: for a proxy of another kind, or without a host. The value is not echoed: it may hold
            the proxy's password.
    """
    host = urllib.parse.urlsplit(url).hostname or ""
    proxies = urllib.request.getproxies_environment()
    if is_loopback(host) or _listed(host, proxies.get("no", "")):
        return None
    scheme = "https" if url.startswith("https:") else "http"
    for name in (scheme, "all"):
        proxy = proxies.get(name)
        if not proxy:
            continue
        where = f"{name.upper()}_PROXY (or {name}_proxy)"
        found = urllib.parse.urlsplit(proxy)
        if found.scheme not in PROXY_SCHEMES or not found.hostname:
            raise ConfigError(
                f"{where}: the proxy for TextMagic must be an http://, https://, socks5:// or socks5h:// URL with a "
                "host, such as http://proxy.example:3128 (SOCKS4 is not supported); fix it, or list TextMagic's "
                "host in NO_PROXY to connect directly"
            )
        if found.query or found.fragment or "#" in proxy or "?" in proxy:
            # A "#" in a password ends the URL there: what follows would be read as host and port, and shown.
            raise ConfigError(
                f"{where}: the proxy URL holds a # or ?; percent-encode them in the user name or password "
                "(# as %23, ? as %3F)"
            )
        try:
            port = found.port
        except ValueError:
            port = 0
        if port == 0:
            raise ConfigError(f"{where}: the proxy's port must be a number from 1 to 65535")
        return proxy
    return None


def _listed(host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated hosts and domains, ``*`` for all) covers ``host``."""
    for entry in no_proxy.lower().split(","):
        entry = entry.strip().lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def known_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine knows (no file path, however it is spelt)."""
    if len(name) > 64:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True
