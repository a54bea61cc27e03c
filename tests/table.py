"""Reading the compact table text back into the page it stands for, as the tool descriptions explain it. Used by
the tests and the benchmark to show that the text loses nothing."""

from __future__ import annotations

import json
from typing import Any


def expand(rendered: dict[str, Any]) -> dict[str, Any]:
    """The page a table rendering stands for (nulls left out), read as the tool descriptions explain it."""
    if "columns" not in rendered:
        return rendered
    table_keys = {"same", "copies", "affixes", "repeats", "columns", "rows"}
    header = {k: v for k, v in rendered.items() if k not in table_keys}
    columns: list[str] = rendered["columns"]
    affixes: dict[str, list[str]] = rendered.get("affixes", {})
    repeats = set(rendered.get("repeats", ()))
    resources: list[dict[str, Any]] = []
    by_id: dict[Any, dict[str, Any]] = {}
    for row in rendered["rows"]:
        item = dict(zip(columns, row, strict=True))
        for column in repeats:
            if isinstance(item.get(column), dict):
                item[column] = by_id[item[column]["sameAs"]][column]
        for column, (prefix, suffix) in affixes.items():
            if item.get(column) is not None:
                item[column] = prefix + item[column] + suffix
        item |= rendered.get("same", {})
        item |= {copy: item[original] for copy, original in rendered.get("copies", {}).items()}
        by_id[item.get("id")] = item
        resources.append({k: v for k, v in item.items() if v is not None})
    return {**header, "resources": resources}


def without_nulls(page: dict[str, Any]) -> dict[str, Any]:
    """``page`` with the null fields of each resource left out: what ``expand`` gives back for its table."""
    return {**page, "resources": [present(item) for item in page["resources"]]}


def present(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` with its null fields left out, as every result carries it."""
    return {k: v for k, v in item.items() if v is not None}


def as_json(value: Any) -> str:
    """``value`` as canonical JSON: equal only when equal as JSON, types included (true is not 1)."""
    return json.dumps(value, sort_keys=True)
