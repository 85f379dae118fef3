"""Answers in the user's language, through the local host: what the model is told, the
headings of `answer`, which language wins (field, conversation, Accept-Language), the
fallback to English, and every supported language rendered from its own translations."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy.orm import Session

from api.models import Conversation, User
from api.services.language import TRANSLATIONS
from api.settings import Settings
from tests.factories import PNG, auth_headers
from tests.fake_openai import FakeOpenAI

SPANISH_HEADINGS = [
    "**Gravedad:** Media · **¿Se puede conducir?:** Sí",
    "### Causas probables",
    "1. **Worn catalytic converter** (probabilidad alta) — cómo comprobarlo: ",
    "### Códigos de avería",
    "### Próximos pasos",
    "### Preguntas para ti",
]


def ask(
    client: httpx.Client, user: User, accept_language: str | None = None, **body: object
) -> httpx.Response:
    headers = auth_headers(user)
    if accept_language is not None:
        headers["Accept-Language"] = accept_language
    response = client.post("/diagnose2", json={"q": "Rattle"} | body, headers=headers)
    assert response.status_code == 200, response.text
    return response


def instruction(openai: FakeOpenAI, turn: int = -1) -> str:
    """What the model was told about the language (the system message after the prompt)."""
    message = openai.diagnosis_bodies[turn]["messages"][1]
    assert message["role"] == "system"
    return str(message["content"])


def test_a_spanish_phone_gets_spanish_instructions_and_spanish_headings(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    response = ask(client, user, "es-ES,es;q=0.9,en;q=0.5")

    told = instruction(openai)
    assert told.startswith("Responde en español.")
    assert "in Spanish" in told
    _, title_call = openai.chat_bodies
    assert "in Spanish" in title_call["messages"][0]["content"]
    assert "Responde en español." in title_call["messages"][0]["content"]

    body = response.json()
    assert (body["language"], body["language_fallback"]) == ("es", False)
    assert response.headers["Content-Language"] == "es"
    for heading in SPANISH_HEADINGS:
        assert heading in body["answer"]
    assert "Severity" not in body["answer"]
    conversation = session.get(Conversation, uuid.UUID(body["session_id"]))
    assert conversation.language == "es"
    shown = client.get(f"/conversations/{body['session_id']}", headers=auth_headers(user))
    assert shown.json()["language"] == "es"
    listed = client.get("/conversations", headers=auth_headers(user)).json()["items"]
    assert [item["language"] for item in listed] == ["es"]
    stored_answer = shown.json()["messages"][1]["content"]["answer"]
    assert stored_answer == body["answer"]


def test_the_language_field_wins_over_accept_language(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = ask(client, user, "es", language="de-AT")
    assert (response.json()["language"], response.headers["Content-Language"]) == ("de", "de")
    assert instruction(openai).startswith("Antworte auf Deutsch.")
    assert "### Wahrscheinliche Ursachen" in response.json()["answer"]


def test_a_conversation_keeps_its_language_until_the_field_changes_it(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    first = ask(client, user, "pt-BR").json()
    session_id = first["session_id"]
    assert first["language"] == "pt"

    follow_up = ask(client, user, "fr", session_id=session_id)  # another phone, same chat
    assert follow_up.json()["language"] == "pt"
    assert instruction(openai).startswith("Responda em português.")

    switched = ask(client, user, "fr", session_id=session_id, language="fr")
    assert switched.json()["language"] == "fr"
    after = ask(client, user, session_id=session_id)
    assert after.json()["language"] == "fr"
    assert "### Prochaines étapes" in after.json()["answer"]


@pytest.mark.parametrize(
    ("accept_language", "field", "language", "fallback"),
    [
        ("it-IT, ja;q=0.5", None, "en", True),  # nothing supported asked for
        (None, "it", "en", True),
        ("es", "zh-Hant-TW", "en", True),  # the field wins, even unsupported
        ("*", None, "en", False),  # anything will do
        (None, None, "en", False),  # nothing asked
        ("fr;q=0.5, de;q=0.9, es;q=0", None, "de", False),  # by q-value; q=0 is "not es"
        ("es;q=0, *;q=0.1", None, "en", False),
        ("x-klingon, !!, fr;q=oops, pt", None, "pt", False),  # malformed members skipped
        ("FR-ca", None, "fr", False),
    ],
)
def test_which_language_answers(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    accept_language: str | None,
    field: str | None,
    language: str,
    fallback: bool,
) -> None:
    body = {"language": field} if field else {}
    response = ask(client, user, accept_language, **body).json()
    assert (response["language"], response["language_fallback"]) == (language, fallback)


@pytest.mark.parametrize("tag", ["", "english", "e", "es_ES", "es-", "12", "es-toolongsubtag"])
def test_a_malformed_language_field_is_422_naming_it(
    client: httpx.Client, openai: FakeOpenAI, user: User, tag: str
) -> None:
    response = client.post(
        "/diagnose2", json={"q": "Rattle", "language": tag}, headers=auth_headers(user)
    )
    assert response.status_code == 422
    assert [error["field"] for error in response.json()["errors"]] == ["body.language"]
    assert openai.untouched


def test_a_form_takes_the_language_field_too(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = client.post(
        "/diagnose2", data={"q": "Rattle", "language": "es"},
        files={"images": ("a.png", PNG, "image/png")},
        headers=auth_headers(user),
    )  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json()["language"] == "es"


def test_the_legacy_route_reads_accept_language(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    headers = auth_headers(user) | {"Accept-Language": "es"}
    response = client.get("/Diagnose", params={"q": "Rough idle"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Language"] == "es"
    assert "### Causas probables" in response.json()["answer"]
    assert instruction(openai).startswith("Responde en español.")


@pytest.mark.parametrize("code", Settings.model_fields["supported_languages"].default)
def test_every_supported_language_is_rendered_from_its_own_translations(
    client: httpx.Client, openai: FakeOpenAI, user: User, code: str
) -> None:
    words = TRANSLATIONS[code]
    response = ask(client, user, language=code)
    answer = response.json()["answer"]
    assert response.json()["language"] == code
    assert instruction(openai).startswith(words.reply_in)
    assert f"in {words.name}" in instruction(openai)
    for label in (
        f"**{words.severity}:** {words.severities['medium']}",
        f"**{words.safe_to_drive}:** {words.safe['yes']}",
        f"### {words.likely_causes}",
        f"({words.likelihoods['high']}) — {words.check}: ",
        f"### {words.fault_codes}",
        f"### {words.next_steps}",
        f"### {words.questions}",
    ):
        assert label in answer, (code, label)
