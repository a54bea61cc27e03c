"""The tools' JSON Schemas as listed, in one pass over what pydantic derives from the models: written in fewer
tokens, and saying what results really hold.

Every listing is read by the model with every conversation, so the schemas are written shorter without
changing what a client sends: ``{"type": "string"}`` for an optional argument instead of ``anyOf`` with a null
branch (a client leaves it out; the server still takes null), no generated titles, no ``"default": null`` on
what is optional anyway, and no
``"additionalProperties": true``, which JSON Schema assumes, nor a type beside an enum of strings. A result
never carries null (``tools.render`` leaves nulls out), so its schema names the one type a field has when
present; it drops defaults (a result has every field) and the models' own descriptions (docstrings for the
code's readers), keeping those of fields.
"""

from __future__ import annotations

from typing import Any

_NULL = {"type": "null"}


def lean_arguments(schema: dict[str, Any]) -> Any:
    """A tool's input schema, leaned, with every ``$ref`` replaced by what it names: a reference inside
    ``items`` makes strict modes (OpenAI's) give up on the whole tool, and arguments never recurse."""
    return lean(_inlined(schema, schema.get("$defs", {})))


def _inlined(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_inlined(item, definitions) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        named = definitions[str(node["$ref"]).rsplit("/", 1)[-1]]
        beside = {key: value for key, value in node.items() if key != "$ref"}
        return _inlined({**named, **beside}, definitions)
    return {key: _inlined(value, definitions) for key, value in node.items() if key != "$defs"}


def lean(schema: Any, *, result_of: bool = False) -> Any:
    """``schema`` (a JSON Schema, or part of one) with the same meaning in fewer tokens; ``result_of``: it is a
    tool's output schema."""
    if isinstance(schema, list):
        return [lean(item, result_of=result_of) for item in schema]
    if not isinstance(schema, dict):
        return schema
    dropped = {"title", "default"} if result_of else {"title"}
    if result_of and "properties" in schema:
        dropped.add("description")
    result = {key: value for key, value in schema.items() if key not in dropped or isinstance(value, dict)}
    if "properties" in result:
        result["properties"] = {
            name: lean(field, result_of=result_of) for name, field in result["properties"].items()
        }
    for key in ("items", "additionalProperties", "$defs", "anyOf", "allOf", "oneOf"):
        if key in result:
            value = result[key]
            if key == "$defs":
                result[key] = {k: lean(v, result_of=result_of) for k, v in value.items()}
            else:
                result[key] = lean(value, result_of=result_of)
    options = result.get("anyOf")
    if result_of and isinstance(options, list) and _NULL in options:
        rest = [option for option in options if option != _NULL]
        del result["anyOf"]
        result = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **result}
    elif isinstance(options, list) and len(options) == 2 and _NULL in options:
        other = options[1] if options[0] == _NULL else options[0]
        kind = other.get("type")
        if isinstance(kind, str) and "$ref" not in other and not set(other) & set(result) - {"anyOf"}:
            # An optional argument is left out rather than sent as null: one type, which single-type schema
            # dialects (Gemini's function declarations, strict modes) take as it is.
            del result["anyOf"]
            result = {**other, **{k: v for k, v in result.items() if k != "default" or v is not None}}
    if (
        "enum" in result
        and result.get("type") == "string"
        and all(isinstance(v, str) for v in result["enum"])
    ):
        # The values listed say the type.
        del result["type"]
    if result.get("additionalProperties") is True:
        # What JSON Schema assumes anyway: keys beyond the properties listed are allowed.
        del result["additionalProperties"]
    return result
