"""The emulator is faithful to TextMagic's published API (validated against the spec when it is at hand)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx2
import jsonschema
import pytest

from server.sandbox import Emulator
from tests.helpers import ANCHOR, API_KEY, USERNAME, ServedEmulator

SPEC = Path(__file__).resolve().parents[2] / "shared" / "textmagic" / "sessions-openapi.yaml"
AUTH = (USERNAME, API_KEY)


@pytest.fixture
def http(served: ServedEmulator, emulator: Emulator) -> Any:
    with httpx2.Client(base_url=served.url, auth=AUTH) as client:
        yield client


def json_schema(schema: Any, schemas: dict[str, Any]) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema: resolve $ref, turn nullable into a null alternative."""
    if isinstance(schema, list):
        return [json_schema(item, schemas) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return json_schema(schemas[schema["$ref"].rsplit("/", 1)[-1]], schemas)
    converted = {
        key: json_schema(value, schemas)
        for key, value in schema.items()
        if key not in ("nullable", "example", "x-nullable")
    }
    if "properties" in converted:
        converted["properties"] = {k: json_schema(v, schemas) for k, v in schema["properties"].items()}
    return {"anyOf": [converted, {"type": "null"}]} if schema.get("nullable") else converted


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    if not SPEC.exists():
        pytest.skip(f"the published spec is not at {SPEC} (it sits in the shared folder beside the checkout)")
    yaml = pytest.importorskip("yaml")
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return loaded


def response_schema(spec: dict[str, Any], operation: str, status: str = "200") -> Any:
    content = spec["operations"][operation]["responses"][status]["content"]
    media = content.get("application/json") or content["*/*"]
    return json_schema(media["schema"], spec["schemas"])


def test_every_response_matches_the_spec(
    spec: dict[str, Any], http: httpx2.Client, emulator: Emulator
) -> None:
    session_id = max(emulator.data.messages, key=lambda i: len(emulator.data.messages[i]))
    checks = [
        ("GET /api/v2/sessions", "/api/v2/sessions", {"limit": 100}, "200"),
        ("GET /api/v2/sessions/{id}", f"/api/v2/sessions/{session_id}", {}, "200"),
        ("GET /api/v2/sessions/{id}", "/api/v2/sessions/1", {}, "404"),
        (
            "GET /api/v2/sessions/{id}/stat",
            f"/api/v2/sessions/{session_id}/stat",
            {"includeDeleted": 1},
            "200",
        ),
        (
            "GET /api/v2/sessions/{id}/messages",
            f"/api/v2/sessions/{session_id}/messages",
            {"limit": 100},
            "200",
        ),
    ]
    for operation, path, params, status in checks:
        response = http.get(path, params=params)
        assert str(response.status_code) == status
        jsonschema.validate(response.json(), response_schema(spec, operation, status))
    unauthorized = httpx2.get(str(http.base_url) + "/api/v2/sessions", auth=(USERNAME, "wrong"))
    jsonschema.validate(unauthorized.json(), response_schema(spec, "GET /api/v2/sessions", "401"))
    every_status = {m["status"] for messages in emulator.data.messages.values() for m in messages}
    status_enum = spec["schemas"]["MessageOut"]["properties"]["status"]["enum"]
    assert every_status <= set(status_enum)


def test_limit_outside_range_becomes_10(http: httpx2.Client, emulator: Emulator) -> None:
    for limit in ("0", "101", "-5", "many"):
        assert http.get("/api/v2/sessions", params={"limit": limit}).json()["limit"] == 10
    assert http.get("/api/v2/sessions", params={"limit": 1}).json()["pageCount"] == len(
        emulator.data.sessions
    )


def test_both_auth_styles_and_401(http: httpx2.Client, served: ServedEmulator) -> None:
    headers = {"X-TM-Username": USERNAME, "X-TM-Key": API_KEY}
    assert httpx2.get(served.url + "/api/v2/sessions", headers=headers).status_code == 200
    wrong = httpx2.get(served.url + "/api/v2/sessions", headers={**headers, "X-TM-Key": "nope"})
    assert (wrong.status_code, wrong.json()) == (
        401,
        {"code": 401, "message": "Wrong username and token combination."},
    )
    assert httpx2.get(served.url + "/api/v2/sessions").status_code == 401
    basic = base64.b64encode(f"{USERNAME}:{API_KEY}".encode()).decode()
    assert (
        httpx2.get(served.url + "/api/v2/sessions", headers={"Authorization": f"Basic {basic}"}).status_code
        == 200
    )


def test_deletes_answer_204_and_404(http: httpx2.Client, emulator: Emulator) -> None:
    first, second, third = sorted(emulator.data.sessions)[:3]
    deleted = http.delete(f"/api/v2/sessions/{first}")
    assert (deleted.status_code, deleted.content) == (204, b"")
    again = http.delete(f"/api/v2/sessions/{first}")
    assert (again.status_code, again.json()) == (404, {"code": 404, "message": "Resource does not exist."})
    assert (
        http.post("/api/v2/sessions/delete", json={"ids": f"{second},{third},7", "all": 0}).status_code == 204
    )
    assert emulator.deleted_ids == [first, second, third]


@pytest.mark.parametrize(
    "body",
    [{"ids": [1, 2]}, {"ids": "1,x"}, {"all": True}, {"all": 2}, {}, [1]],
)
def test_bulk_delete_validates_its_body(http: httpx2.Client, emulator: Emulator, body: Any) -> None:
    response = http.post("/api/v2/sessions/delete", json=body)
    assert response.status_code == 400
    assert response.json()["message"] == "Validation Failed"
    assert emulator.deleted_ids == []


def test_query_validation(http: httpx2.Client, emulator: Emulator) -> None:
    session_id = max(emulator.data.sessions)
    bad_status = http.get(f"/api/v2/sessions/{session_id}/messages", params={"statuses": "d,z"})
    assert bad_status.status_code == 400 and "statuses" in bad_status.json()["errors"]["fields"]
    bad_flag = http.get(f"/api/v2/sessions/{session_id}/stat", params={"includeDeleted": "true"})
    assert bad_flag.status_code == 400 and "includeDeleted" in bad_flag.json()["errors"]["fields"]
    unknown = http.get("/api/v2/sessions/1/messages").json()
    assert (unknown["resources"], unknown["pageCount"]) == ([], 0)


def test_stat_agrees_with_messages(http: httpx2.Client, emulator: Emulator) -> None:
    for session_id, messages in emulator.data.messages.items():
        stat = http.get(f"/api/v2/sessions/{session_id}/stat", params={"includeDeleted": 1}).json()
        assert stat["all"] == len(messages) == emulator.data.sessions[session_id]["numbersCount"]
        assert sum(v for k, v in stat.items() if k != "all") == stat["all"]
        assert stat["delivered"] == sum(m["status"] == "d" for m in messages)


def test_seed_is_deterministic_and_realistic() -> None:
    one, two = Emulator(anchor=ANCHOR), Emulator(anchor=ANCHOR)
    assert one.data == two.data
    assert Emulator(anchor=ANCHOR, seed=8).data != one.data
    sessions = one.data.sessions.values()
    messages = [m for ms in one.data.messages.values() for m in ms]
    assert 24 <= len(sessions) <= 60 and len(messages) >= 300
    assert {s["source"] for s in sessions} >= {"A", "O"} and len({s["destination"] for s in sessions}) >= 2
    assert {m["status"] for m in messages} >= {"d", "f", "j", "s", "e", "u"}
    assert len({m["country"] for m in messages}) >= 5 and any(m["deleted"] for m in messages)
    assert all(abs(s["price"] - sum(m["price"] for m in one.data.messages[s["id"]])) < 1e-6 for s in sessions)
