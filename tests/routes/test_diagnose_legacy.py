"""The legacy GET/POST /api/Diagnose of old app builds: its wire shapes on the same turn as
diagnose2."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy.orm import Session

from api.models import User
from tests.factories import JPEG, PNG, auth_headers, b64, stored_turns
from tests.fake_openai import DIAGNOSIS, FakeOpenAI


def test_legacy_get_keeps_its_contract_and_describes_the_vehicle(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    params = {
        "q": "Rough idle",
        "make": "Honda",
        "model": "Civic",
        "year": "2008",
        "mods": "Exhaust, Lowering springs",
    }
    response = client.get("/Diagnose", headers=auth_headers(user), params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"answer", "session_id"}
    assert body["answer"].startswith(DIAGNOSIS["summary"])
    assert openai.diagnosis_bodies[0]["messages"][2]["content"] == (
        "The driver's vehicle: 2008 Honda Civic.\nInstalled modifications:\n"
        "- Exhaust\n- Lowering springs"
    )
    follow_up = client.get(
        "/Diagnose",
        headers=auth_headers(user),
        params={"q": "Still rough", "session_id": body["session_id"]},
    )
    assert follow_up.json()["session_id"] == body["session_id"]
    assert len(stored_turns(session, uuid.UUID(body["session_id"]))) == 4
    assert client.get("/Diagnose", params=params).status_code == 401


def test_legacy_post_accepts_json_and_multipart_media(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    as_json = client.post(
        "/Diagnose",
        headers=auth_headers(user),
        json={"q": "What is this leak?", "make": "Ford", "mods": ["Tow bar"], "image": b64(JPEG)},
    )
    assert as_json.status_code == 200, as_json.text
    assert set(as_json.json()) == {"answer", "session_id"}
    as_form = client.post(
        "/Diagnose",
        headers=auth_headers(user),
        data={"q": "And this one?", "session_id": as_json.json()["session_id"]},
        files={"image": ("leak.png", PNG)},
    )
    assert as_form.status_code == 200, as_form.text
    assert as_form.json()["session_id"] == as_json.json()["session_id"]
    first, second = openai.diagnosis_bodies
    assert first["messages"][-1]["content"][1]["image_url"]["url"].startswith("data:image/jpeg")
    assert second["messages"][-1]["content"][1]["image_url"]["url"].startswith("data:image/png")


def test_legacy_needs_a_question(client: httpx.Client, openai: FakeOpenAI, user: User) -> None:
    assert client.get("/Diagnose", headers=auth_headers(user)).status_code == 422
    response = client.post("/Diagnose", headers=auth_headers(user), json={"make": "Ford"})
    assert response.status_code == 422
    assert "at least one of q, image or audio" in response.text


def test_legacy_mods_are_bounded(client: httpx.Client, openai: FakeOpenAI, user: User) -> None:
    for mods in (["Turbo"] * 31, ["x" * 101], "y" * 2001):
        response = client.post(
            "/Diagnose", headers=auth_headers(user), json={"q": "Rough idle", "mods": mods}
        )
        assert response.status_code == 422, mods
        assert response.json()["errors"][0]["field"].startswith("body.mods")
    assert openai.untouched
