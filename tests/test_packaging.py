"""Client configuration files agree with the code: script name, settings, version, registry rules."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from pydantic import SecretStr

from server import __version__
from server.state.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SCRIPT = next(iter(PYPROJECT["project"]["scripts"]))


def load(name: str) -> Any:
    return json.loads((ROOT / name).read_text(encoding="utf-8"))


def setting_names() -> set[str]:
    return {f"TEXTMAGIC_{name.upper()}" for name in Settings.model_fields}


def test_mcp_json_entries() -> None:
    servers = load("mcp.json")["mcpServers"]
    account, sandbox, http = (
        servers["textmagic-sessions"],
        servers["textmagic-sessions-sandbox"],
        servers["textmagic-sessions-http"],
    )
    assert account["command"] == sandbox["command"] == SCRIPT
    assert set(account["env"]) == {"TEXTMAGIC_USERNAME", "TEXTMAGIC_API_KEY"} <= setting_names()
    assert all(value.startswith("${") for value in account["env"].values()), "no literal credentials"
    assert sandbox["args"] == ["--sandbox"]
    assert http["type"] == "http" and http["url"].endswith("/mcp")
    assert http["headers"]["Authorization"].startswith("Bearer ${")


def test_server_json_follows_the_registry_rules() -> None:
    server = load("server.json")
    assert re.fullmatch(r"[a-zA-Z0-9.-]+/[a-zA-Z0-9._-]+", server["name"]) and 3 <= len(server["name"]) <= 200
    assert 1 <= len(server["description"]) <= 100
    [package] = server["packages"]
    assert (
        server["version"]
        == package["version"]
        == __version__
        == PYPROJECT["project"].get("version", __version__)
    )
    assert package["registryType"] == "pypi" and package["identifier"] == PYPROJECT["project"]["name"]
    assert package["transport"] == {"type": "stdio"}
    # The same deployment two ways: OAuth, which clients discover from the server, or a static token.
    oauth, static = server["remotes"]
    assert {oauth["type"], static["type"]} == {"streamable-http"} and oauth["url"] == static["url"]
    assert oauth["url"].endswith("/mcp") and "headers" not in oauth
    [authorization] = static["headers"]
    assert authorization["name"] == "Authorization" and authorization["isSecret"] is True


def test_server_json_declares_settings_honestly() -> None:
    [package] = load("server.json")["packages"]
    declared = {variable["name"]: variable for variable in package["environmentVariables"]}
    assert set(declared) <= setting_names(), "every declared variable is one the server reads"
    required = {name for name, variable in declared.items() if variable.get("isRequired")}
    assert required == {"TEXTMAGIC_USERNAME", "TEXTMAGIC_API_KEY"}
    secret_settings = {
        f"TEXTMAGIC_{name.upper()}"
        for name, field in Settings.model_fields.items()
        if SecretStr in (getattr(field.annotation, "__args__", ()) or (field.annotation,))
    }
    # Settings of the HTTP transport alone: a stdio package needs none of them.
    stdio_secrets = secret_settings - {"TEXTMAGIC_MCP_TOKENS", "TEXTMAGIC_OAUTH_CLIENT_SECRET"}
    assert stdio_secrets <= set(declared)
    assert all(declared[name].get("isSecret") is True for name in stdio_secrets)
    assert all(declared[name].get("isSecret", False) is False for name in set(declared) - stdio_secrets)


# The registry's schema, beside the checkout (it is in CI); nothing of the project's needs it.
REGISTRY_SCHEMA = ROOT.parent / "shared" / "registry" / "server.schema.json"
CURRENT_FORMAT = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"


def test_server_json_against_the_registry_schema() -> None:
    server = load("server.json")
    # The registry refuses the 2025-09-29 format as deprecated.
    assert server["$schema"] == CURRENT_FORMAT
    if not REGISTRY_SCHEMA.exists():
        pytest.skip(f"the registry's schema is not beside this checkout ({REGISTRY_SCHEMA})")
    schema = json.loads(REGISTRY_SCHEMA.read_text(encoding="utf-8"))
    jsonschema.validate(server, schema, format_checker=jsonschema.FormatChecker())


def test_the_readme_proves_the_pypi_package_is_this_server() -> None:
    # The registry reads this line in the README that PyPI publishes.
    readme = (ROOT / PYPROJECT["project"]["readme"]).read_text(encoding="utf-8")
    assert f"mcp-name: {load('server.json')['name']}" in readme


def test_the_readme_reads_well_on_a_package_index() -> None:
    # PyPI shows the README without the repository around it: every link and image must be absolute.
    readme = (ROOT / PYPROJECT["project"]["readme"]).read_text(encoding="utf-8")
    relative = re.findall(r"\]\((?!https?://|#|mailto:)([^)]+)\)", readme)
    assert relative == []
    project = PYPROJECT["project"]
    assert (
        {"Homepage", "Source", "Issues"} <= set(project["urls"])
        and project["keywords"]
        and project["authors"]
    )
    assert any(c.startswith("Programming Language :: Python :: 3.11") for c in project["classifiers"])
