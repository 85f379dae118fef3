"""A Python client generated from the served document with openapi-python-client, used as a
mobile developer would: sign up, add a vehicle, diagnose as JSON and as multipart/form-data.
The client talks to the local host in-process (httpx's WSGI transport)."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from tests.factories import PASSWORD, PNG, new_email
from tests.fake_openai import FakeOpenAI
from tests.harness import local_host
from tests.outbox import Outbox

PACKAGE = "axly_generated_client"


class RecordingTransport(httpx.WSGITransport):
    """The local host in-process, remembering each request's Content-Type."""

    def __init__(self, app) -> None:
        super().__init__(app=app)
        self.content_types: dict[str, list[str]] = {}

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent = request.headers.get("Content-Type", "")
        self.content_types.setdefault(request.url.path, []).append(sent.split(";")[0])
        return super().handle_request(request)


@pytest.fixture(scope="session")
def generated_client(openapi_file: Path, tmp_path_factory) -> Iterator[ModuleType]:
    """The package openapi-python-client writes for the document, imported."""
    out = tmp_path_factory.mktemp("python-client")
    tools = Path(sys.executable).parent  # the generator formats its output with our ruff
    result = subprocess.run(
        [tools / "openapi-python-client", "generate", "--path", openapi_file, "--meta", "none",
         "--output-path", out / PACKAGE],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"},
    )  # fmt: skip
    # It reports what it could not generate as warnings, yet still exits 0.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr, result.stdout + result.stderr
    sys.path.insert(0, str(out))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


def operations(tag: str, *names: str) -> list[ModuleType]:
    """The generated modules of operations (`api/<tag>/<operationId>.py`)."""
    return [module(f"api.{tag}.{name}") for name in names]


def test_generated_client_signs_up_adds_a_vehicle_and_diagnoses_as_json_and_multipart(
    generated_client: ModuleType,
    client: httpx.Client,  # the test's database transaction
    openai: FakeOpenAI,
    outbox: Outbox,
) -> None:
    models, types = module("models"), module("types")
    request_pin, confirm_signup = operations("auth", "request_pin", "confirm_signup")
    (create_vehicle,) = operations("vehicles", "create_vehicle")
    diagnose_v2, get_conversation = operations("diagnose", "diagnose_v2", "get_conversation")
    transport = RecordingTransport(local_host())
    connection = {"base_url": "http://testserver", "httpx_args": {"transport": transport}}
    anonymous = generated_client.Client(**connection)

    email = new_email()
    sent = request_pin.sync_detailed(client=anonymous, body=models.PinRequest(email=email))
    assert sent.status_code == 202
    signed_up = confirm_signup.sync_detailed(
        client=anonymous,
        body=models.SignupConfirmation(email=email, password=PASSWORD, pin=outbox.pin_for(email)),
    )
    assert signed_up.status_code == 201
    assert signed_up.headers["Location"] == "/api/me"
    assert isinstance(signed_up.parsed, models.TokenBundle)
    assert signed_up.headers["X-Request-ID"]
    caller = generated_client.AuthenticatedClient(token=signed_up.parsed.access_token, **connection)

    vehicle = create_vehicle.sync(
        client=caller, body=models.VehicleCreate(make="Mazda", model="MX-5", year=1990)
    )
    assert isinstance(vehicle, models.VehiclePublic)
    assert (vehicle.year, vehicle.nickname) == ("1990", None)

    as_json = diagnose_v2.sync(
        client=caller,
        body=models.DiagnoseRequest(q="Rattle at 3000 rpm", vehicle_id=vehicle.id),
    )
    assert isinstance(as_json, models.DiagnoseResponse), as_json
    photo = types.File(payload=io.BytesIO(PNG), file_name="exhaust.png", mime_type="image/png")
    as_form = diagnose_v2.sync(
        client=caller,
        body=models.DiagnoseForm(
            q="Here is the exhaust", session_id=as_json.session_id, images=[photo],
            dtc_codes=["P0420"],
        ),
    )  # fmt: skip
    assert isinstance(as_form, models.DiagnoseResponse), as_form
    assert as_form.session_id == as_json.session_id
    sent = transport.content_types["/api/diagnose2"]
    assert sent == ["application/json", "multipart/form-data"]
    sent_photo = openai.diagnosis_bodies[-1]["messages"][-1]["content"][-1]
    assert sent_photo["image_url"]["url"].startswith("data:image/png;base64,")

    conversation = get_conversation.sync(conversation_id=as_json.session_id, client=caller)
    assert isinstance(conversation, models.ConversationDetail)
    contents = [message.content for message in conversation.messages]
    assert [type(c).__name__ for c in contents] == ["UserTurn", "AssistantTurn"] * 2
    assert contents[2].dtc_codes == ["P0420"]
    assert [a.mime_type for a in contents[2].attachments] == ["image/png"]
    assert contents[3].diagnosis.summary == as_form.diagnosis.summary

    refused = create_vehicle.sync_detailed(
        client=caller, body=models.VehicleCreate(make="Mazda", model="MX-5", year=1800)
    )
    assert refused.status_code == 422
    assert isinstance(refused.parsed, models.Problem)
    assert refused.parsed.errors[0].field == "body.year"
