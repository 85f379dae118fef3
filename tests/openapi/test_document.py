"""The served OpenAPI document: valid 3.1, what generators need, and true to what the server
really sends (real responses are checked against it)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from sqlalchemy.orm import Session

from api.models import ChatMessage, User
from api.schemas.common import without_null
from tests.factories import PNG, WAV, auth_headers, b64, new_email
from tests.fake_openai import FakeOpenAI

# Generated clients name their functions after these: renaming one breaks every client.
OPERATION_IDS = {
    ("GET", "/api/health"): "health",
    ("GET", "/api/openapi.json"): "openapi",
    ("GET", "/api/docs"): "docs",
    ("GET", "/api/docs/{asset}"): "docs_asset",
    ("POST", "/api/request_pin"): "request_pin",
    ("POST", "/api/confirm_signup"): "confirm_signup",
    ("POST", "/api/login"): "login",
    ("POST", "/api/auth/refresh"): "refresh",
    ("POST", "/api/logout"): "logout",
    ("POST", "/api/request_password_reset_pin"): "request_password_reset_pin",
    ("POST", "/api/confirm_password_reset"): "confirm_password_reset",
    ("POST", "/api/change_password"): "change_password",
    ("GET", "/api/me"): "me",
    ("DELETE", "/api/me"): "delete_me",
    ("GET", "/api/vehicles"): "list_vehicles",
    ("POST", "/api/vehicles"): "create_vehicle",
    ("GET", "/api/vehicles/{vehicle_id}"): "get_vehicle",
    ("PATCH", "/api/vehicles/{vehicle_id}"): "update_vehicle",
    ("PUT", "/api/vehicles/{vehicle_id}"): "replace_vehicle",
    ("DELETE", "/api/vehicles/{vehicle_id}"): "delete_vehicle",
    ("GET", "/api/vehicles/{vehicle_id}/mods"): "list_mods",
    ("POST", "/api/vehicles/{vehicle_id}/mods"): "create_mod",
    ("GET", "/api/vehicles/{vehicle_id}/mods/{mod_id}"): "get_mod",
    ("PATCH", "/api/vehicles/{vehicle_id}/mods/{mod_id}"): "update_mod",
    ("PUT", "/api/vehicles/{vehicle_id}/mods/{mod_id}"): "replace_mod",
    ("DELETE", "/api/vehicles/{vehicle_id}/mods/{mod_id}"): "delete_mod",
    ("POST", "/api/diagnose2"): "diagnose_v2",
    ("GET", "/api/Diagnose"): "diagnose_legacy_get",
    ("POST", "/api/Diagnose"): "diagnose_legacy_post",
    ("GET", "/api/conversations"): "list_conversations",
    ("GET", "/api/conversations/{conversation_id}"): "get_conversation",
    ("PATCH", "/api/conversations/{conversation_id}"): "rename_conversation",
    ("DELETE", "/api/conversations/{conversation_id}"): "delete_conversation",
}


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def errors_against(document: dict[str, Any], name: str, instance: Any) -> list[str]:
    """Why `instance` does not conform to components/schemas/`name` (empty: it does)."""
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry = Registry().with_resource("urn:axly", resource)
    schema = {"$ref": f"urn:axly#/components/schemas/{name}"}
    validator = OAS31Validator(schema, registry=registry)
    return [error.message for error in validator.iter_errors(instance)]


def test_document_is_valid_openapi_3_1(openapi_document: dict[str, Any]) -> None:
    assert openapi_document["openapi"] == "3.1.0"
    validate(openapi_document)  # raises, naming the first error
    assert openapi_document["servers"] == [
        {"url": "/", "description": "The host serving this document"}
    ]


def test_operation_ids_are_stable(openapi_document: dict[str, Any]) -> None:
    ids = {key: operation["operationId"] for key, operation in operations(openapi_document).items()}
    assert ids == OPERATION_IDS


def test_component_names_read_as_class_names(openapi_document: dict[str, Any]) -> None:
    names = list(openapi_document["components"]["schemas"])
    assert [name for name in names if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", name)] == []
    assert {"VehiclePage", "ModPage", "ConversationPage"} <= set(names)
    # Query models are parameters, not bodies: no component for them.
    assert not {"Pagination", "ConversationQuery", "LegacyDiagnoseQuery"} & set(names)


def test_every_response_declares_the_headers_it_carries(openapi_document: dict[str, Any]) -> None:
    expected = {"201": "Location", "401": "WWW-Authenticate", "429": "Retry-After"}
    for key, operation in operations(openapi_document).items():
        for status, response in operation["responses"].items():
            headers = response.get("headers", {})
            assert "X-Request-ID" in headers, (key, status)
            if status in expected:
                assert expected[status] in headers, (key, status)
    for name, header in openapi_document["components"]["headers"].items():
        assert header["schema"]["type"] in {"string", "integer"}, name


def request_schemas(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every request body schema by component name, with the media type it is sent as."""
    found = {}
    for operation in operations(document).values():
        for media_type, content in operation.get("requestBody", {}).get("content", {}).items():
            name = content["schema"]["$ref"].rsplit("/", 1)[1]
            found[name] = {"media_type": media_type, **document["components"]["schemas"][name]}
    return found


def test_request_fields_that_may_be_left_out_are_optional(
    openapi_document: dict[str, Any],
) -> None:
    """No `default` (openapi-typescript makes such fields required); in a form nothing is
    nullable (a part is sent or not); in JSON, null only where the server takes it."""
    bodies = request_schemas(openapi_document)
    for name, schema in bodies.items():
        for field, prop in schema["properties"].items():
            assert "default" not in prop, (name, field)
            if schema["media_type"] == "multipart/form-data":
                assert "anyOf" not in prop, (name, field)
    assert bodies["VehicleCreate"]["required"] == ["make", "model", "year"]
    assert bodies["DiagnoseRequest"].get("required", []) == []
    assert bodies["ModCreate"]["required"] == ["name"]
    patch = bodies["VehicleUpdate"]["properties"]
    assert {"type": "null"} in patch["nickname"]["anyOf"]  # null clears it
    assert "null clears it" in patch["nickname"]["description"]
    assert patch["make"]["type"] == "string"  # never null
    assert "Default: false" in bodies["LogoutRequest"]["properties"]["all"]["description"]


def test_a_union_keeps_its_other_branches_when_null_goes() -> None:
    schema = {"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "null"}], "default": None}
    without_null(schema)
    assert schema == {"anyOf": [{"type": "integer"}, {"type": "string"}]}


@pytest.mark.parametrize(("path", "json_body", "form"), [
    ("/api/diagnose2", "DiagnoseRequest", "DiagnoseForm"),
    ("/api/Diagnose", "LegacyDiagnoseBody", "LegacyDiagnoseForm"),
])  # fmt: skip
def test_json_and_multipart_bodies_have_their_own_schemas(
    openapi_document: dict[str, Any], path: str, json_body: str, form: str
) -> None:
    content = openapi_document["paths"][path]["post"]["requestBody"]["content"]
    assert content["application/json"]["schema"]["$ref"].endswith(f"/{json_body}")
    assert content["multipart/form-data"]["schema"]["$ref"].endswith(f"/{form}")
    schemas = openapi_document["components"]["schemas"]
    audio = schemas[form]["properties"]["audio"]
    assert (audio["format"], audio["contentMediaType"]) == ("binary", "application/octet-stream")
    assert {"type": "string", "description": "Base64, or a data: URL"} in schemas[json_body][
        "properties"
    ]["audio"]["anyOf"]


def test_problem_bodies_are_what_the_document_says(
    client: httpx.Client, openai: FakeOpenAI, user: User, openapi_document: dict[str, Any]
) -> None:
    """Each kind of error body conforms to Problem and has nothing it does not document."""
    headers = auth_headers(user)
    documented = set(openapi_document["components"]["schemas"]["Problem"]["properties"])
    pin_request = {"email": new_email()}
    assert client.post("/request_pin", json=pin_request).status_code == 202
    responses = {
        "not_authenticated": client.get("/me"),
        "validation_failed": client.post("/vehicles", json={"make": "VW"}, headers=headers),
        "unsupported_image_type": client.post(
            "/diagnose2", json={"images": [b64(b"text")]}, headers=headers
        ),
        "rate_limited": client.post("/request_pin", json=pin_request),
    }
    for code, response in responses.items():
        body = response.json()
        assert response.headers["content-type"] == "application/problem+json"
        assert body["code"] == code
        assert errors_against(openapi_document, "Problem", body) == [], code
        assert set(body) <= documented, code
    assert responses["unsupported_image_type"].json()["field"] == "images[0]"
    assert responses["validation_failed"].json()["errors"][0]["field"] == "body.model"
    limited = responses["rate_limited"]
    assert limited.json()["retry_after"] == int(limited.headers["Retry-After"])


def test_stored_messages_conform_to_their_own_kind(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    session: Session,
    openapi_document: dict[str, Any],
) -> None:
    """A real turn (text, codes, a photo, a recording) reads back as a UserTurn and an
    AssistantTurn, not only as the catch-all LegacyTurn; a migrated turn comes back as it
    was stored."""
    headers = auth_headers(user)
    turn = client.post(
        "/diagnose2",
        json={
            "q": "Rattle from the exhaust",
            "dtc_codes": ["P0420"],
            "images": [b64(PNG)],
            "audio": b64(WAV),
        },
        headers=headers,
    )
    assert turn.status_code == 200, turn.text
    conversation_id = turn.json()["session_id"]
    migrated = {"text": "From the old app", "meta": {"tokens": 3}}
    session.add(
        ChatMessage(conversation_id=conversation_id, role="user", content=migrated),
    )
    session.flush()

    detail = client.get(f"/conversations/{conversation_id}", headers=headers).json()
    assert errors_against(openapi_document, "ConversationDetail", detail) == []
    question, answer, old = (message["content"] for message in detail["messages"])
    assert errors_against(openapi_document, "UserTurn", question) == []
    assert errors_against(openapi_document, "AssistantTurn", answer) == []
    assert errors_against(openapi_document, "UserTurn", answer) != []
    assert errors_against(openapi_document, "AssistantTurn", question) != []
    assert old == migrated
    assert errors_against(openapi_document, "UserTurn", old) != []
    assert [a["kind"] for a in question["attachments"]] == ["image", "audio"]
    assert question["transcript"] == openai.transcript
    assert answer["diagnosis"]["severity"] == "medium"
