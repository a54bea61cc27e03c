"""Configuration: the environment first, clear errors that name the variable and never echo secrets."""

from __future__ import annotations

import pytest

from server.state.settings import DEFAULT_BASE_URL, ConfigError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("USERNAME", "API_KEY", "BASE_URL", "TIMEOUT", "SANDBOX", "ALLOW_DELETE_ALL"):
        monkeypatch.delenv(f"TEXTMAGIC_{name}", raising=False)


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTMAGIC_USERNAME", "ops")
    monkeypatch.setenv("TEXTMAGIC_API_KEY", "k-123")
    monkeypatch.setenv("TEXTMAGIC_TIMEOUT", "2.5")
    monkeypatch.setenv("TEXTMAGIC_ALLOW_DELETE_ALL", "true")
    settings = load_settings()
    assert settings.username == "ops" and settings.api_key and settings.api_key.get_secret_value() == "k-123"
    assert settings.timeout == 2.5 and settings.allow_delete_all is True
    assert settings.api_root == DEFAULT_BASE_URL
    assert "k-123" not in repr(settings)


def test_missing_credentials_name_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTMAGIC_USERNAME", "ops")
    with pytest.raises(ConfigError, match="set TEXTMAGIC_API_KEY ") as caught:
        load_settings()
    assert "TEXTMAGIC_USERNAME" not in str(caught.value).split("set ")[1].split(" (")[0]
    assert "--sandbox" in str(caught.value)


def test_sandbox_needs_no_credentials() -> None:
    assert load_settings(sandbox=True).sandbox is True


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TEXTMAGIC_TIMEOUT", "-3", "TEXTMAGIC_TIMEOUT: Input should be greater than 0"),
        ("TEXTMAGIC_TIMEOUT", "soon", "TEXTMAGIC_TIMEOUT: Input should be a valid number"),
        (
            "TEXTMAGIC_BASE_URL",
            "ftp://example.com",
            "TEXTMAGIC_BASE_URL: URL scheme should be 'http' or 'https'",
        ),
        (
            "TEXTMAGIC_BASE_URL",
            "https://u:pw-SECRET@example.com",
            "TEXTMAGIC_BASE_URL: must not contain credentials",
        ),
        (
            "TEXTMAGIC_CONFIRMATION_TTL",
            "5",
            "TEXTMAGIC_CONFIRMATION_TTL: Input should be greater than or equal to 10",
        ),
    ],
)
def test_invalid_values_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(sandbox=True)
    assert expected in str(caught.value)
    assert "SECRET" not in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"oauth_issuer": "https://auth.example.com"}, "without TEXTMAGIC_PUBLIC_URL"),
        (
            {"oauth_issuer": "http://auth.example.com", "public_url": "https://mcp.example.com"},
            "TEXTMAGIC_OAUTH_ISSUER: plain http://",
        ),
        (
            {"oauth_issuer": "https://auth.example.com", "public_url": "https://mcp.example.com/mcp"},
            "TEXTMAGIC_PUBLIC_URL must be a base URL",
        ),
        (
            {
                "oauth_issuer": "https://auth.example.com",
                "public_url": "https://mcp.example.com",
                "oauth_introspection_url": "https://auth.example.com/introspect",
            },
            "needs TEXTMAGIC_OAUTH_CLIENT_ID and TEXTMAGIC_OAUTH_CLIENT_SECRET",
        ),
        (
            {"oauth_issuer": "https://user:pw@auth.example.com"},
            "TEXTMAGIC_OAUTH_ISSUER: must be an https:// URL",
        ),
    ],
)
def test_oauth_settings_that_cannot_work_stop_the_start(overrides: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(sandbox=True, **overrides)
    assert expected in str(caught.value) and "pw" not in str(caught.value)


def test_oauth_is_authentication_and_keeps_the_issuer_as_written() -> None:
    settings = load_settings(
        sandbox=True, oauth_issuer="https://tenant.auth0.com/", public_url="https://mcp.example.com/"
    )
    assert settings.authenticates and settings.oauth_issuer == "https://tenant.auth0.com/"
    assert settings.resource_url == "https://mcp.example.com/mcp"


def test_replicas_sharing_redis_without_a_shared_secret_do_not_start() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(sandbox=True, redis_url="redis://:pw@127.0.0.1:6379/0")
    assert "without TEXTMAGIC_CONFIRMATION_SECRET" in str(caught.value) and "pw" not in str(caught.value)
