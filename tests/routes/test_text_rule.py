"""One rule for user text wherever it is accepted (issue 10, D2 and D6): C0 and C1 control
characters (but tab, CR and LF in free text), lone surrogates and text with nothing visible
in it are a 422 naming the field, before anything is stored or any provider is paid."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy.orm import Session

from api.models import Conversation, User, Vehicle, VehicleMod
from tests.factories import PASSWORD, add_conversation, auth_headers, count, new_email
from tests.fake_openai import FakeOpenAI

# Each is refused: a C1 control (CSI, a terminal's "clear screen" when written out), a lone
# surrogate (a JSON escape no encoder can write), text of zero-width characters only, and a
# bidi override (text that reads otherwise on screen).
C1 = "\u009b[2J"
SURROGATE = "x \udc00 y"
INVISIBLE = "\u200b\u200d\ufeff"
# A right-to-left override: "invoice\u202eexe.pdf" shows as "invoicefdp.exe".
BIDI_OVERRIDE = "invoice\u202eexe.pdf"
BAD_TEXT = {
    C1: "control_character",
    SURROGATE: "lone_surrogate",
    INVISIBLE: "invisible_text",
    BIDI_OVERRIDE: "bidi_override",
}


def send(client: httpx.Client, method: str, path: str, body: dict, **headers: str):
    """`json.dumps` keeps a lone surrogate as its `\\udc00` escape, as a client sends it."""
    return client.request(
        method,
        path,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **headers},
    )


def assert_refused(response: httpx.Response, field: str, kind: str) -> None:
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [(e["field"], e["type"]) for e in errors] == [(field, kind)]


@pytest.mark.parametrize(("text", "kind"), BAD_TEXT.items())
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"q": "{}"}, "body.q"),
        ({"q": "fine", "images": [], "dtc_codes": ["P0420"], "vehicle_id": None}, None),
    ],
)
def test_diagnosis_question(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    text: str,
    kind: str,
    body: dict,
    field: str | None,
) -> None:
    if field is None:  # the control: the same request with good text is served
        response = send(client, "POST", "/diagnose2", body, **auth_headers(user))
        assert response.status_code == 200, response.text
        return
    response = send(client, "POST", "/diagnose2", {"q": text}, **auth_headers(user))
    assert_refused(response, field, kind)
    assert openai.untouched
    assert count(session, Conversation, Conversation.user_id == user.id) == 0


@pytest.mark.parametrize(("text", "kind"), BAD_TEXT.items())
@pytest.mark.parametrize("field", ["make", "model", "year"])
def test_legacy_post_vehicle_fields(
    client: httpx.Client, openai: FakeOpenAI, user: User, text: str, kind: str, field: str
) -> None:
    body = {"q": "It knocks", field: text}
    assert_refused(
        send(client, "POST", "/Diagnose", body, **auth_headers(user)), f"body.{field}", kind
    )
    assert openai.untouched


@pytest.mark.parametrize(
    "mods",
    [f"Exhaust,{C1}", f"Exhaust,{SURROGATE}", ["Exhaust", C1], ["Exhaust", INVISIBLE]],
)
def test_legacy_mods_as_text_and_as_a_list(
    client: httpx.Client, openai: FakeOpenAI, user: User, mods: str | list[str]
) -> None:
    body = {"q": "hi", "mods": mods}
    response = send(client, "POST", "/Diagnose", body, **auth_headers(user))
    assert response.status_code == 422, response.text
    assert all(e["field"].startswith("body.mods") for e in response.json()["errors"])
    assert openai.untouched


@pytest.mark.parametrize("field", ["q", "make", "model", "mods"])
def test_legacy_query_fields(
    client: httpx.Client, openai: FakeOpenAI, user: User, field: str
) -> None:
    params = {"q": "hi", field: C1}
    response = client.get("/Diagnose", params=params, headers=auth_headers(user))
    assert_refused(response, f"query.{field}", "control_character")
    assert openai.untouched


@pytest.mark.parametrize(("text", "kind"), BAD_TEXT.items())
@pytest.mark.parametrize("field", ["make", "model", "submodel", "nickname"])
def test_vehicle_fields(
    client: httpx.Client, session: Session, user: User, text: str, kind: str, field: str
) -> None:
    body = {"make": "Mazda", "model": "MX-5", "year": 1990, field: text}
    response = send(client, "POST", "/vehicles", body, **auth_headers(user))
    assert_refused(response, f"body.{field}", kind)
    assert count(session, Vehicle, Vehicle.user_id == user.id) == 0


def test_vehicle_edits_and_mods_follow_the_same_rule(
    client: httpx.Client, session: Session, user: User
) -> None:
    headers = auth_headers(user)
    vehicle = client.post(
        "/vehicles", json={"make": "Mazda", "model": "MX-5", "year": 1990}, headers=headers
    ).json()
    url = f"/vehicles/{vehicle['id']}"
    assert_refused(
        send(client, "PATCH", url, {"make": INVISIBLE}, **headers), "body.make", "invisible_text"
    )
    assert_refused(
        send(client, "PATCH", url, {"model": C1}, **headers), "body.model", "control_character"
    )
    mods = f"{url}/mods"
    assert_refused(
        send(client, "POST", mods, {"name": SURROGATE}, **headers), "body.name", "lone_surrogate"
    )
    response = send(
        client, "POST", mods, {"name": "Exhaust", "description": f"Loud{C1}"}, **headers
    )
    assert_refused(response, "body.description", "control_character")
    assert client.get(url, headers=headers).json()["make"] == "Mazda"
    assert count(session, VehicleMod) == 0


def test_blank_optional_vehicle_text_is_still_null_not_invisible(
    client: httpx.Client, user: User
) -> None:
    body = {"make": "Mazda", "model": "MX-5", "year": 1990, "nickname": "   "}
    response = client.post("/vehicles", json=body, headers=auth_headers(user))
    assert response.status_code == 201
    assert response.json()["nickname"] is None


@pytest.mark.parametrize(("text", "kind"), BAD_TEXT.items())
def test_conversation_title(
    client: httpx.Client, session: Session, user: User, text: str, kind: str
) -> None:
    conversation = add_conversation(session, user.id, title="Before")
    response = send(
        client, "PATCH", f"/conversations/{conversation.id}", {"title": text}, **auth_headers(user)
    )
    assert_refused(response, "body.title", kind)
    session.expire_all()
    assert session.get(Conversation, conversation.id).title == "Before"


def test_line_breaks_and_tabs_stay_allowed_in_free_text(client: httpx.Client, user: User) -> None:
    headers = auth_headers(user)
    vehicle = client.post(
        "/vehicles", json={"make": "Mazda", "model": "MX-5", "year": 1990}, headers=headers
    ).json()
    response = client.post(
        f"/vehicles/{vehicle['id']}/mods",
        json={"name": "Exhaust", "description": "Line one\r\n\tLine two"},
        headers=headers,
    )
    assert response.status_code == 201
    # ... but not in one-line text.
    response = client.post(
        "/vehicles", json={"make": "Maz\nda", "model": "MX-5", "year": 1990}, headers=headers
    )
    assert_refused(response, "body.make", "control_character")


@pytest.mark.parametrize(
    ("path", "body", "field", "kind"),
    [
        ("/request_pin", {"email": f"a{C1}@example.com"}, "body.email", "control_character"),
        ("/request_pin", {"email": "a\udc00@example.com"}, "body.email", "lone_surrogate"),
        (
            "/confirm_signup",
            {"email": new_email(), "password": f"Long enough {C1}", "pin": "123456"},
            "body.password",
            "control_character",
        ),
    ],
)
def test_account_text(client: httpx.Client, path: str, body: dict, field: str, kind: str) -> None:
    assert_refused(send(client, "POST", path, body), field, kind)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/login", {"email": "driver@example.com", "password": "x\udc00"}),
        ("/auth/refresh", {"refresh_token": "a.b\udc00.c"}),
    ],
)
def test_unencodable_secrets_are_a_422_not_a_500(
    client: httpx.Client, path: str, body: dict
) -> None:
    response = send(client, "POST", path, body)
    assert response.status_code == 422


def test_an_existing_password_is_checked_whatever_characters_it_holds(
    client: httpx.Client, session: Session
) -> None:
    """Control characters are refused in new passwords, never in ones being checked: a
    password set before the rule must still log in."""
    from tests.factories import create_user

    email = new_email()
    create_user(session, email=email, password=f"{PASSWORD}\x01")
    response = client.post("/login", json={"email": email, "password": f"{PASSWORD}\x01"})
    assert response.status_code == 200, response.text


def test_a_surrogate_in_an_unknown_key_is_a_422_not_a_500(client: httpx.Client) -> None:
    body = {"email": "a@example.com", "password": "x", "\udc00": 1}
    response = send(client, "POST", "/login", body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["type"] == "string_unicode"
