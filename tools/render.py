"""Tool results: the full model as structured content, and a compact text rendering of it for the model."""

from __future__ import annotations

from mcp_types import CallToolResult, TextContent
from pydantic import BaseModel


def as_result(model: BaseModel) -> CallToolResult:
    # Nulls and untouched defaults (an empty not_found_ids, deleted_all false) tell the reader of the text
    # nothing; the structured content keeps every field.
    text = model.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=True)
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json", by_alias=True),
    )
