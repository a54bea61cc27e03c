"""The Claude Desktop bundle (dist/textmagic-sessions-mcp.mcpb, built by `cd bundle && npm ci && npm run build`):
its manifest lists the tools and prompts as the server lists them, asks for what the server reads, and the
command it declares, run as a host runs it, serves the sandbox."""

from __future__ import annotations

import json
import os
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

from server import __version__
from server.state.settings import Settings, load_settings
from server.wiring.app import build_server
from tests.helpers import shell_environment

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = json.loads((ROOT / "bundle" / "manifest.json").read_text(encoding="utf-8"))
BUNDLE = ROOT / "dist" / "textmagic-sessions-mcp.mcpb"
UV = Path(sys.executable).with_name("uv")


def built_bundle() -> Path:
    if not BUNDLE.exists():
        message = f"{BUNDLE} is not built (cd bundle && npm ci && npm run build); .ci/run builds it"
        if os.environ.get("REQUIRE_TEST_SERVICES"):
            pytest.fail(message)
        pytest.skip(message)
    return BUNDLE


async def test_the_manifest_says_what_the_server_serves() -> None:
    async with Client(build_server(load_settings(sandbox=True))) as client:
        tools = (await client.list_tools()).tools
        prompts = (await client.list_prompts()).prompts
    assert MANIFEST["version"] == __version__
    assert MANIFEST["tools"] == [{"name": tool.name, "description": tool.title} for tool in tools]
    assert [(p["name"], p["description"], p["arguments"]) for p in MANIFEST["prompts"]] == [
        (p.name, p.description, [a.name for a in p.arguments or []]) for p in prompts
    ]
    config = MANIFEST["user_config"]
    assert set(config) == {"username", "api_key", "timezone", "read_only", "sandbox"}
    assert config["api_key"]["sensitive"] is True and not config["username"].get("sensitive")
    env = MANIFEST["server"]["mcp_config"]["env"]
    assert set(env) <= {f"TEXTMAGIC_{name.upper()}" for name in Settings.model_fields}
    named = [re.fullmatch(r"\$\{user_config\.(\w+)\}", value) for value in env.values()]
    assert all(named) and {match.group(1) for match in named if match} == set(config)


def declared(unpacked: Path, values: dict[str, Any]) -> tuple[str, list[str], dict[str, str]]:
    """The manifest's command, arguments and environment as a host fills them in for these settings."""

    def value(match: re.Match[str]) -> str:
        given = values[match.group(1)]
        return str(given).lower() if isinstance(given, bool) else str(given)

    def filled(text: str) -> str:
        return re.sub(r"\$\{user_config\.(\w+)\}", value, text.replace("${__dirname}", str(unpacked)))

    config = json.loads((unpacked / "manifest.json").read_text(encoding="utf-8"))["server"]["mcp_config"]
    return (
        config["command"],
        [filled(a) for a in config["args"]],
        {k: filled(v) for k, v in config["env"].items()},
    )


async def test_the_bundle_runs_the_command_it_declares(tmp_path: Path) -> None:
    with zipfile.ZipFile(built_bundle()) as bundle:
        bundle.extractall(tmp_path)
    # What a person who only ticked "Sandbox" leaves: the defaults, and no credentials.
    values = {name: option.get("default", "") for name, option in MANIFEST["user_config"].items()} | {
        "sandbox": True
    }
    command, args, env = declared(tmp_path, values)
    assert command == "uv" and UV.exists()
    # uv from this environment, on this Python: the host's own uv finds one of its own.
    params = StdioServerParameters(
        command=str(UV), args=args, env=shell_environment(**env, UV_PYTHON=sys.executable)
    )
    async with Client(stdio_client(params)) as client:
        names = [tool.name for tool in (await client.list_tools()).tools]
        listed = await client.call_tool("get_all_message_sessions", {"limit": 1})
    assert names == [tool["name"] for tool in MANIFEST["tools"]]
    assert not listed.is_error and listed.structured_content["resources"]
