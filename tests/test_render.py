"""The compact text rendering loses nothing: a page's table expands back to exactly the page (nulls aside),
JSON types included."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from server.sandbox import Emulator
from tests.helpers import connect, text_of
from tests.table import as_json, expand, without_nulls
from tools.render import TABLE_LEGEND, as_result


class Page(BaseModel):
    model_config = ConfigDict(extra="allow")
    page: int
    resources: list[dict[str, Any]]


texts = st.sampled_from(
    [
        "Hi Ann, your appointment is tomorrow at 9:00. Reply C to confirm, or call us.",
        "Hi Bob, your appointment is tomorrow at 9:00. Reply C to confirm, or call us.",
        "2026-11-27T10:01:02+0000",
        "2026-11-27T10:59:00+0000",
        "Flash sale! 20% off everything this weekend with code SAVE20. Reply STOP.",
    ]
) | st.text(max_size=50)
# Finite floats only: JSON has no Infinity, so no TextMagic answer can hold one.
finite = st.floats(allow_nan=False, allow_infinity=False)
cells = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, 1, 0.0, 1.0, -0.0, True, False, "1", "true"]),
    finite,
    texts,
    st.just({"nested": [1, "x"]}),
)


@st.composite
def pages(draw: st.DrawFn) -> list[dict[str, Any]]:
    fields = draw(
        st.lists(
            st.sampled_from(["text", "time", "name", "phone", "receiver", "flag", "extra", "parts"]),
            unique=True,
        )
    )
    count = draw(st.integers(min_value=0, max_value=12))
    ids = draw(
        st.lists(st.integers(min_value=1, max_value=10**12), min_size=count, max_size=count, unique=True)
    )
    resources = []
    for id_ in ids:
        item: dict[str, Any] = {"id": id_}
        for field in fields:
            if draw(st.booleans()):
                item[field] = draw(cells)
        resources.append(item)
    if draw(st.booleans()):
        for item in resources:
            item["phone"] = item.get("receiver")
    # Columns whose values are equal in Python but not in JSON: flags all true beside counts all 1.
    if draw(st.booleans()):
        flag, count = draw(st.sampled_from([(True, 1), (False, 0), (1, 1.0), (0, False)]))
        for item in resources:
            item["deleted"], item["partsCount"] = flag, count
    return resources


@given(resources=pages())
def test_a_table_expands_back_to_its_page(resources: list[dict[str, Any]]) -> None:
    result = as_result(Page(page=1, resources=resources))
    rendered = json.loads(text_of(result))
    assert as_json(expand(rendered)) == as_json(without_nulls({"page": 1, "resources": resources}))
    assert as_json(result.structured_content) == as_json({"page": 1, "resources": resources})


def test_a_flag_is_never_taken_for_a_count_it_equals_in_python() -> None:
    resources = [{"id": n, "deleted": True, "partsCount": 1, "price": 1.0, "zero": 0} for n in (1, 2)]
    resources += [{"id": 3, "deleted": False, "partsCount": 0, "price": 0.0, "zero": False}]
    rendered = json.loads(text_of(as_result(Page(page=1, resources=resources))))
    assert "copies" not in rendered
    assert [row[rendered["columns"].index("deleted")] for row in rendered["rows"]] == [True, True, False]
    uniform = [{"id": n, "deleted": True, "partsCount": 1} for n in (1, 2)]
    assert json.loads(text_of(as_result(Page(page=1, resources=uniform))))["same"] == {
        "deleted": True,
        "partsCount": 1,
    }


def test_the_legend_explains_every_key_the_text_uses() -> None:
    for key in ("columns", "same", "copies", "affixes", "repeats", "sameAs"):
        assert f"'{key}'" in TABLE_LEGEND or f'"{key}"' in TABLE_LEGEND


def test_shared_parts_are_written_once() -> None:
    names = ["Ann", "Bob", "Cy"]
    resources = [
        {
            "id": n,
            "text": f"Hi {name}, your appointment is tomorrow.",
            "sent": f"2026-11-27T10:0{n}:00+0000",
            "sender": "ACME",
            "receiver": f"4477000{n}",
            "phone": f"4477000{n}",
            "note": None,
        }
        for n, name in enumerate(names)
    ]
    rendered = json.loads(text_of(as_result(Page(page=1, resources=resources))))
    assert rendered["same"] == {"sender": "ACME"}
    assert rendered["copies"] == {"phone": "receiver"}
    assert rendered["affixes"]["text"] == ["Hi ", ", your appointment is tomorrow."]
    assert rendered["affixes"]["sent"] == ["2026-11-27T10:", ":00+0000"]
    assert "note" not in rendered["columns"]
    assert [row[rendered["columns"].index("text")] for row in rendered["rows"]] == names


def test_repeated_long_texts_point_to_their_first_row() -> None:
    long = "Flash sale! 20% off everything this weekend with code SAVE20."
    resources = [
        {"id": 7, "text": long},
        {"id": 8, "text": "Other text that is long enough to count here."},
        {"id": 9, "text": long},
    ]
    rendered = json.loads(text_of(as_result(Page(page=1, resources=resources))))
    assert rendered["repeats"] == ["text"]
    assert rendered["rows"][2] == [9, {"sameAs": 7}]


@pytest.mark.anyio
@pytest.mark.parametrize("tool", ["get_all_message_sessions", "get_messages_by_session_id"])
async def test_list_tools_text_is_lossless_and_short(make_server: Any, emulator: Emulator, tool: str) -> None:
    biggest = max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))
    arguments = {"limit": 100} | ({"id": biggest, "include_deleted": True} if "messages" in tool else {})
    async with connect(make_server(), "modern") as client:
        result = await client.call_tool(tool, arguments)
    text = text_of(result)
    assert as_json(expand(json.loads(text))) == as_json(without_nulls(result.structured_content))
    assert len(text) < 0.6 * len(json.dumps(result.structured_content, separators=(",", ":")))


def test_a_column_is_a_copy_only_of_an_equal_original() -> None:
    # "code" loses its shared prefix in the table; "short" equals what remains, but not the original.
    resources = [{"id": 1, "code": "SALE-100", "short": "100"}, {"id": 2, "code": "SALE-200", "short": "200"}]
    rendered = json.loads(text_of(as_result(Page(page=1, resources=resources))))
    assert "copies" not in rendered
    assert as_json(expand(rendered)) == as_json(without_nulls({"page": 1, "resources": resources}))
