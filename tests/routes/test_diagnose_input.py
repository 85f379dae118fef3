"""Bad diagnosis input is a clear 4xx before any provider call, and nothing is stored:
media, multipart forms, empty requests, body size, and text PostgreSQL cannot store."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.orm import Session

from api.models import Conversation, User
from tests.factories import JPEG, PNG, WAV, add_conversation, auth_headers, b64, count, stored_turns
from tests.fake_openai import FakeOpenAI
from tests.harness import changed_settings

# Base64 one character longer than the largest image (8 MB) and recording (25 MB).
BIG_IMAGE = "A" * ((8 * 1024 * 1024 + 3) // 3 * 4 + 4)
BIG_AUDIO = "A" * ((25 * 1024 * 1024 + 3) // 3 * 4 + 4)


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"images": ["not base64!!"]}, 400, "invalid_base64", "images[0]"),
        ({"images": [b64(PNG), "data:image/png;base64,@@@"]}, 400, "invalid_base64", "images[1]"),
        (
            {"images": [b64(PNG), b64(b"%PDF-1.7 not an image")]},
            415,
            "unsupported_image_type",
            "images[1]",
        ),
        ({"image": b64(WAV)}, 415, "unsupported_image_type", "image"),
        ({"images": [BIG_IMAGE]}, 413, "media_too_large", "images[0]"),
        ({"images": [b64(PNG)] * 4, "image": b64(JPEG)}, 413, "too_many_images", "images"),
        ({"q": "noise", "audio": b64(PNG)}, 415, "unsupported_audio_type", "audio"),
        ({"q": "noise", "audio": "%%%"}, 400, "invalid_base64", "audio"),
        ({"audio": BIG_AUDIO}, 413, "media_too_large", "audio"),
    ],
)
def test_bad_media_is_refused_naming_the_field_and_nothing_is_stored(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    body: dict,
    status: int,
    code: str,
    field: str,
) -> None:
    response = client.post("/diagnose2", headers=auth_headers(user), json=body)
    assert response.status_code == status
    problem = response.json()
    assert (problem["code"], problem["field"]) == (code, field)
    assert field in problem["detail"]
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert openai.untouched


def test_bad_media_in_multipart_is_refused_too(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        files=[("images", ("a.png", PNG)), ("images", ("b.png", b"GIF00 nope"))],
    )
    assert response.status_code == 415
    assert response.json()["field"] == "images[1]"


def test_multipart_empty_parts_count_as_absent(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    # A form's file input with no file chosen still sends an empty part.
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        data={"q": "Knocking", "dtc_codes": "P0420, ,P0301,"},
        files=[("images", ("", b"")), ("images", ("a.png", PNG)), ("audio", ("", b""))],
    )
    assert response.status_code == 200, response.text
    (question, _) = stored_turns(session, uuid.UUID(response.json()["session_id"]))
    assert question.content["dtc_codes"] == ["P0420", "P0301"]
    assert [a["mime_type"] for a in question.content["attachments"]] == ["image/png"]
    legacy = client.post(
        "/Diagnose",
        headers=auth_headers(user),
        data={"q": "Knocking", "make": ""},
        files={"image": ("", b"")},
    )
    assert legacy.status_code == 200, legacy.text


@pytest.mark.parametrize(
    ("content_type", "body", "status"),
    [
        ("multipart/form-data", b"q=hello", 400),
        ("multipart/form-data; boundary=xx", b"garbage without parts", 400),
        (
            "multipart/form-data; boundary=xx",
            b"".join(
                b'--xx\r\nContent-Disposition: form-data; name="dtc_codes"\r\n\r\nP0420\r\n'
                for _ in range(41)
            )
            + b"--xx--\r\n",
            413,
        ),
    ],
)
def test_malformed_multipart_is_a_clear_4xx(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    response = client.post(
        "/diagnose2",
        headers={**auth_headers(user), "Content-Type": content_type},
        content=body,
    )
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert openai.untouched


def test_request_must_carry_something_to_diagnose(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": ""})
    assert response.status_code == 422
    assert "at least one of q" in response.text
    blank = client.post("/diagnose2", headers=auth_headers(user), json={"q": "  "})
    assert blank.json()["errors"][0]["type"] == "invisible_text"
    bad_code = client.post("/diagnose2", headers=auth_headers(user), json={"dtc_codes": ["X1"]})
    assert bad_code.json()["errors"][0]["field"] == "body.dtc_codes.0"


def test_diagnose_body_cap_comes_from_its_setting(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    with changed_settings(DIAGNOSE_MAX_BODY_BYTES="2048"):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "x" * 3000})
    assert response.status_code == 413
    assert "2048" in response.json()["detail"]
    assert openai.untouched


@pytest.mark.parametrize(
    ("method", "path", "fields"),
    [
        ("POST", "/diagnose2", {"q": "a\x00b"}),
        ("POST", "/diagnose2", {"q": "bell\x07"}),
        ("GET", "/Diagnose", {"q": "a\x00b"}),
        ("GET", "/Diagnose", {"q": "hi", "make": "Ho\x00nda"}),
        ("GET", "/Diagnose", {"q": "hi", "model": "Civ\x00ic"}),
        ("GET", "/Diagnose", {"q": "hi", "year": "20\x0008"}),
        ("GET", "/Diagnose", {"q": "hi", "mods": "Exhaust,\x00"}),
        ("POST", "/Diagnose", {"q": "a\x1bb"}),
        ("POST", "/Diagnose", {"q": "hi", "mods": ["Exhaust", "Tur\x00bo"]}),
    ],
)
def test_control_characters_in_user_text_are_refused_before_any_call(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    method: str,
    path: str,
    fields: dict,
) -> None:
    query, body = (fields, None) if method == "GET" else (None, fields)
    response = client.request(method, path, headers=auth_headers(user), params=query, json=body)
    assert response.status_code == 422, response.text
    assert "control characters" in response.text
    assert openai.untouched
    assert count(session, Conversation, Conversation.user_id == user.id) == 0


def test_line_breaks_and_tabs_in_a_question_are_fine(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    question = "It knocks\r\nwhen cold\tand idles rough"
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": question})
    assert response.status_code == 200, response.text
    assert openai.diagnosis_bodies[0]["messages"][-1]["content"] == question


def test_a_nul_in_a_conversation_title_is_refused(
    client: httpx.Client, session: Session, user: User
) -> None:
    conversation = add_conversation(session, user.id, title="Before")
    response = client.patch(
        f"/conversations/{conversation.id}", headers=auth_headers(user), json={"title": "a\x00b"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.title"
    session.expire_all()
    assert session.get(Conversation, conversation.id).title == "Before"
