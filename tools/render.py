"""Tool results: the full model as structured content, and a compact text rendering of it for the model.

One object renders as JSON without nulls or untouched defaults, any list of several objects in it as a table
(below). A page of resources renders as a table,
which says the same in a fraction of the tokens: ``columns`` and ``rows``; ``same``, fields equal in every
row; ``copies``, fields equal to another field in every row; ``affixes``, a prefix and suffix shared by every
value of a field, written once; and in the fields listed under ``repeats``, ``{"sameAs": id}`` for a value
equal to that of the earlier row with that id. Values are equal only as JSON: ``true`` is not ``1``.
"""

from __future__ import annotations

import json
from typing import Any

from mcp_types import CallToolResult, ResourceLink, TextContent
from pydantic import BaseModel

# Shorter shared text is not worth its header entry.
_MIN_AFFIX = 5
_MIN_REPEAT = 40

TABLE_LEGEND = (
    "Pages come as tables: rows follow 'columns'; 'same', 'copies' (of a column), 'affixes' ([prefix, suffix]) "
    "and {\"sameAs\": row id} in 'repeats' fields stand for shared values; nulls left out."
)


def as_result(model: BaseModel, *, links: list[ResourceLink] | None = None) -> CallToolResult:
    """The result of a tool: ``model`` in full as structured content, and the compact text of it; ``links`` to
    resources (a whole list as CSV) follow the text."""
    # Never a null: a field with nothing to say is absent, as its published schema (``tools.published_schemas``) says.
    data = model.model_dump(mode="json", by_alias=True, exclude_none=True)
    resources = data.get("resources")
    if isinstance(resources, list):
        text = _compact({**{k: v for k, v in data.items() if k != "resources"}, **_table(resources)})
    else:
        # Nulls and untouched defaults (an empty not_found_ids, deleted_all false) tell the reader nothing.
        text = _compact(
            _tabled(model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True))
        )
    content: list[TextContent | ResourceLink] = [TextContent(type="text", text=text), *(links or [])]
    return CallToolResult(content=content, structured_content=data)


def _tabled(value: Any) -> Any:
    """``value`` with every list of several objects in it written as a plain table: columns, rows, same."""
    if isinstance(value, dict):
        return {key: _tabled(item) for key, item in value.items()}
    if isinstance(value, list) and len(value) > 1 and all(isinstance(item, dict) for item in value):
        return _table(value, compress=False)
    return value


def _table(items: list[dict[str, Any]], *, compress: bool = True) -> dict[str, Any]:
    """The table of ``items``; ``compress``: also copies, affixes and repeats (TABLE_LEGEND), else only same."""
    names = list(dict.fromkeys(name for item in items for name in item))
    values = {name: [item.get(name) for item in items] for name in names}
    # Compared as JSON, so that true and 1 (equal in Python) stay apart. Kept apart from ``values``, which is
    # rewritten below (affixes cut, repeats marked): a copy must equal the original.
    originals = {name: [_json(value) for value in column] for name, column in values.items()}
    same: dict[str, Any] = {}
    copies: dict[str, str] = {}
    affixes: dict[str, list[str]] = {}
    repeats: list[str] = []
    columns: list[str] = []
    ids = originals.get("id", [])
    # A repeat points to its row by id, which must then tell the rows apart.
    ids_unique = len(ids) == len(items) and "null" not in ids and len(set(ids)) == len(ids)
    for name, column in values.items():
        present = [value for value in column if value is not None]
        if not present:
            continue
        encoded = originals[name]
        if len(items) > 1 and len(present) == len(column) and all(value == encoded[0] for value in encoded):
            same[name] = column[0]
            continue
        original = next((kept for kept in columns if originals[kept] == encoded), None) if compress else None
        if original is not None:
            copies[name] = original
            continue
        columns.append(name)
        if not compress or not all(isinstance(value, str) for value in present):
            continue
        prefix, suffix = _shared_affixes(present)
        if len(prefix) + len(suffix) >= _MIN_AFFIX:
            affixes[name] = [prefix, suffix]
            values[name] = [None if v is None else v[len(prefix) : len(v) - len(suffix)] for v in column]
        elif ids_unique and _mark_repeats(values, name):
            repeats.append(name)
    table: dict[str, Any] = {}
    for key, part in (("same", same), ("copies", copies), ("affixes", affixes), ("repeats", repeats)):
        if part:
            table[key] = part
    table["columns"] = columns
    table["rows"] = [[values[name][i] for name in columns] for i in range(len(items))]
    return table


def _shared_affixes(texts: list[str]) -> tuple[str, str]:
    if len(texts) < 2:
        return "", ""
    prefix = _common_prefix(texts)
    suffix = _common_prefix([text[len(prefix) :][::-1] for text in texts])[::-1]
    # Cut back to separators, so that no value is split inside a word or a number.
    end = len(prefix)
    while end and prefix[end - 1].isalnum():
        end -= 1
    start = 0
    while start < len(suffix) and suffix[start].isalnum():
        start += 1
    return prefix[:end], suffix[start:]


def _common_prefix(texts: list[str]) -> str:
    # What the lexicographically first and last share, all share.
    first, last = min(texts), max(texts)
    size = 0
    while size < len(first) and first[size] == last[size]:
        size += 1
    return first[:size]


def _mark_repeats(values: dict[str, list[Any]], name: str) -> bool:
    """Replace long values seen in an earlier row by {"sameAs": that row's id}; True if any was."""
    first_seen: dict[str, Any] = {}
    marked = False
    column = list(values[name])
    for i, value in enumerate(column):
        if not isinstance(value, str) or len(value) < _MIN_REPEAT:
            continue
        if value in first_seen:
            column[i] = {"sameAs": first_seen[value]}
            marked = True
        else:
            first_seen[value] = values["id"][i]
    values[name] = column
    return marked


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
