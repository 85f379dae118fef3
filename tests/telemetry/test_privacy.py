"""Nothing personal in any exported item: a whole journey (sign-up, login, a vehicle,
diagnoses from text and a recording, a legacy question in a query string, a renamed
conversation, logout) with every span, log record, event and metric scanned afterwards."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.exported import Exported
from tests.factories import PASSWORD, WAV, b64, bearer, new_email, sign_up
from tests.fake_openai import FakeOpenAI
from tests.outbox import Outbox

QUESTION = "Secret question: my neighbour Jane keeps borrowing the car"
TRANSCRIPT = "Secret transcript: the rattle started after the crash on Elm Street"
LEGACY_QUESTION = "Secret legacy question in a query string"
TITLE = "Secret title of my breakdown"
VIN = "1HGCM82633A004352"
NICKNAME = "Secret nickname Rosie"


def everything_exported(exported: Exported) -> str:
    """Every name, attribute, body and dimension exported, one per line, as sent."""
    texts: list[Any] = []

    def add(name: Any, attributes: Any) -> None:
        texts.append(name)
        for key, value in dict(attributes or {}).items():
            texts.append(f"{key}={value}")

    for span in exported.spans:
        add(span.name, span.attributes)
        texts.append(span.status.description)
        for event in span.events:
            add(event.name, event.attributes)
    for log in exported.logs:
        add(log.log_record.body, log.log_record.attributes)
    for name in ("diagnose_duration_ms", "openai_tokens"):
        for point in exported.metric_points(name):
            add(name, point.attributes)
    return "\n".join(str(text) for text in texts)


def test_a_whole_journey_exports_nothing_personal(
    exported: Exported, client: httpx.Client, openai: FakeOpenAI, outbox: Outbox
) -> None:
    email = new_email()
    signed_up = sign_up(client, outbox, email)
    pin = outbox.pin_for(email)
    login = client.post("/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200
    tokens = login.json()
    auth = bearer(tokens["access_token"])
    vehicle = client.post(
        "/vehicles",
        headers=auth,
        json={"make": "Honda", "model": "Accord", "year": 2003, "vin": VIN, "nickname": NICKNAME},
    )
    assert vehicle.status_code == 201
    openai.transcript = TRANSCRIPT
    turn = client.post(
        "/diagnose2",
        headers=auth,
        json={
            "q": QUESTION,
            "vehicle_id": vehicle.json()["id"],
            "audio": b64(WAV),
        },
    )
    assert turn.status_code == 200
    conversation = turn.json()["session_id"]
    rename = client.patch(f"/conversations/{conversation}", headers=auth, json={"title": TITLE})
    assert rename.status_code == 200
    legacy = client.get("/Diagnose", headers=auth, params={"q": LEGACY_QUESTION})
    assert legacy.status_code == 200
    logout = client.post("/logout", headers=auth, json={"refresh_token": tokens["refresh_token"]})
    assert logout.status_code == 204

    text = everything_exported(exported)
    assert "POST /api/diagnose2" in text  # the scan reads what was really exported
    assert len(exported.events("openai_tokens")) == 5
    secrets = [
        email,
        email.split("@")[0],
        PASSWORD,
        signed_up["access_token"],
        signed_up["refresh_token"],
        tokens["access_token"],
        tokens["refresh_token"],
        "sk-test",  # the provider key
        "$2b$",  # a password hash, i.e. an SQL parameter
        QUESTION,
        TRANSCRIPT,
        LEGACY_QUESTION,
        TITLE,
        VIN,
        NICKNAME,
        turn.json()["answer"],
    ]
    for secret in secrets:
        assert secret not in text, secret
    assert not re.search(rf"\b{pin}\b", text)
    urls = re.findall(r"^(?:url\.full|http\.url|url\.path)=(.*)$", text, re.MULTILINE)
    assert urls
    assert not [url for url in urls if "?" in url]
