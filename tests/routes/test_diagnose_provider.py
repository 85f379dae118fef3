"""The AI provider's faults: a failed turn is rolled back whole (nothing stored, nothing
charged), a reply that breaks the schema is asked for once more, Azure OpenAI when it is
configured, 503 when no provider is, and provider text PostgreSQL cannot store is
cleaned."""

from __future__ import annotations

import uuid

import httpx
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy.orm import Session
from werkzeug import Response

from api.models import ChatAttachment, Conversation, DiagnosisUsage, User
from tests.factories import (
    PNG,
    WAV,
    add_conversation,
    add_message,
    auth_headers,
    b64,
    count,
    stored_turns,
)
from tests.fake_openai import (
    DIAGNOSIS,
    STRICT_STRUCTURE,
    FakeOpenAI,
    Slow,
    error_response,
    json_response,
    schema_keywords,
)
from tests.harness import changed_settings


@pytest.mark.parametrize(
    ("replies", "status", "code", "attempts"),
    [
        ([error_response(429)], 502, "upstream_rate_limited", 1),
        ([error_response(500)], 502, "upstream_error", 1),
        (["this is not json", '{"summary": "no other fields"}'], 502, "upstream_invalid_reply", 2),
        ([Slow(0.8)], 504, "upstream_timeout", 1),
    ],
)
def test_upstream_faults_roll_the_whole_turn_back(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    replies: list,
    status: int,
    code: str,
    attempts: int,
) -> None:
    conversation = add_conversation(session, user.id, title="Existing")
    add_message(session, conversation, "user", {"text": "before"}, 5)
    add_message(session, conversation, "assistant", {"answer": "earlier"}, 4)
    openai.replies = list(replies)
    with changed_settings(OPENAI_TIMEOUT_S="0.5"):
        existing = client.post(
            "/diagnose2",
            headers=auth_headers(user),
            json={"q": "again", "session_id": str(conversation.id), "images": [b64(PNG)]},
        )
    assert existing.status_code == status
    problem = existing.json()
    assert problem["code"] == code
    assert "secret" not in existing.text
    assert len(openai.diagnosis_bodies) == attempts
    assert [m.content for m in stored_turns(session, conversation.id)] == [
        {"text": "before"},
        {"answer": "earlier"},
    ]
    assert count(session, ChatAttachment) == 0
    assert count(session, Conversation, Conversation.user_id == user.id) == 1
    assert count(session, DiagnosisUsage) == 0  # a failed turn is not charged


def test_a_reply_that_fails_the_schema_once_is_retried(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    openai.replies = ["{not json"]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hello"})
    assert response.status_code == 200
    assert len(openai.diagnosis_bodies) == 2
    assert response.json()["usage"] == {"prompt_tokens": 642, "completion_tokens": 108}


def test_upstream_fault_on_a_new_conversation_leaves_no_conversation(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    openai.replies = [error_response(503)]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hello"})
    assert response.status_code == 502
    assert count(session, Conversation, Conversation.user_id == user.id) == 0


def test_no_provider_configured_is_503_and_nothing_is_stored(
    client: httpx.Client, session: Session, user: User
) -> None:
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hello"})
    assert response.status_code == 503
    assert response.json()["code"] == "ai_not_configured"
    assert count(session, Conversation, Conversation.user_id == user.id) == 0


def test_azure_openai_is_used_when_its_endpoint_is_set(
    client: httpx.Client, httpserver: HTTPServer, user: User
) -> None:
    fake = FakeOpenAI(httpserver)
    with changed_settings(
        AZURE_OPENAI_ENDPOINT=httpserver.url_for("/").rstrip("/"),
        AZURE_OPENAI_API_KEY="azure-key",
        AZURE_OPENAI_DEPLOYMENT="diagnostician",
        OPENAI_MAX_RETRIES="0",
    ):
        httpserver.expect_request(
            "/openai/deployments/diagnostician/chat/completions", method="POST"
        ).respond_with_handler(fake.chat)
        response = client.post(
            "/diagnose2",
            headers=auth_headers(user),
            json={"q": "hello", "session_id": None},
        )
    assert response.status_code == 200, response.text
    (request, _), *_ = [entry for entry in httpserver.log if entry[0].path.startswith("/openai/")]
    assert request.headers["api-key"] == "azure-key"
    assert request.args["api-version"] == "2024-10-21"
    # Its strict mode refuses every type-specific keyword (maxLength, maxItems, ...): the
    # caps go as descriptions only.
    schema = fake.diagnosis_bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema_keywords(schema) <= STRICT_STRUCTURE
    assert schema["properties"]["summary"]["description"] == "At most 1500 characters"


def test_half_configured_azure_is_not_configured(
    client: httpx.Client, session: Session, user: User
) -> None:
    with changed_settings(
        OPENAI_API_KEY="sk-test", AZURE_OPENAI_ENDPOINT="https://example.openai.azure.com"
    ):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hello"})
    assert response.status_code == 503
    assert response.json()["code"] == "ai_not_configured"


def test_provider_text_is_made_safe_before_it_is_stored_or_shown(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    """NUL (PostgreSQL refuses it), C1 controls and lone surrogates (no encoder takes them:
    a 500 after the provider was paid) in any provider text: the turn is kept, cleaned."""
    openai.replies = [
        {
            **DIAGNOSIS,
            "summary": "Cata\x00lyst \udc00\u009b[2J",
            "likely_causes": [{"cause": "\x00", "likelihood": "high", "how_to_check": "L\x00ook"}],
            "next_steps": ["Dri\x00ve"],
        }
    ]
    openai.title = "Cat\x00alyst \ud800"
    openai.transcript = "A rat\x00tle \udc00"
    openai.sound = "Knock\x00ing"
    with changed_settings(OPENAI_AUDIO_MODEL="gpt-4o-audio-preview"):
        response = client.post(
            "/diagnose2", headers=auth_headers(user), json={"q": "hi", "audio": b64(WAV)}
        )
    assert response.status_code == 200, response.text
    diagnosis = response.json()["diagnosis"]
    assert diagnosis["summary"] == "Catalyst \ufffd[2J"
    assert diagnosis["likely_causes"][0] == {
        "cause": "",
        "likelihood": "high",
        "how_to_check": "Look",
    }
    assert diagnosis["next_steps"] == ["Drive"]
    conversation_id = uuid.UUID(response.json()["session_id"])
    question, answer = stored_turns(session, conversation_id)
    assert (question.content["transcript"], question.content["sound_analysis"]) == (
        "A rattle \ufffd",
        "Knocking",
    )
    assert answer.content["diagnosis"] == diagnosis
    assert session.get(Conversation, conversation_id).title == "Catalyst \ufffd"


def refusal(code: str | None, *, status: int = 400, param: str | None = None) -> Response:
    """A 400 / 422 as OpenAI words them."""
    error = {"message": "upstream detail", "type": "invalid_request_error", "param": param}
    return json_response({"error": {**error, "code": code}}, status)


# The provider's codes that blame what the user sent, and the input each names.
REFUSED_INPUTS = {
    "unreadable image": ("invalid_image_format", 400, "images"),
    "image it cannot parse": ("image_parse_error", 400, "images"),
    "content policy": ("content_policy_violation", 400, "content"),
    "Azure content filter": ("content_filter", 400, "content"),
    "as a 422": ("invalid_image", 422, "images"),
}


@pytest.mark.parametrize(
    ("code", "status", "rejected"), REFUSED_INPUTS.values(), ids=REFUSED_INPUTS.keys()
)
def test_the_provider_refusing_the_users_input_is_422_naming_it(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    code: str,
    status: int,
    rejected: str,
) -> None:
    openai.replies = [refusal(code, status=status)]
    response = client.post(
        "/diagnose2", headers=auth_headers(user), json={"q": "hi", "images": [b64(PNG)]}
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "upstream_rejected_input"
    assert response.json()["rejected"] == rejected
    assert "upstream detail" not in response.text
    assert len(openai.diagnosis_bodies) == 1  # the same input would be refused again
    # Nothing stored, nothing charged: the user sends it again, changed.
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert count(session, ChatAttachment) == 0
    assert count(session, DiagnosisUsage) == 0


def test_a_recording_the_provider_cannot_use_is_422_naming_it(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    openai.transcript = [refusal(None)]  # Whisper names no code: the file is all it got
    response = client.post("/diagnose2", headers=auth_headers(user), json={"audio": b64(WAV)})
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "upstream_rejected_input"
    assert response.json()["rejected"] == "audio"
    assert openai.diagnosis_bodies == []
    assert count(session, DiagnosisUsage) == 0


@pytest.mark.parametrize("param", ["file", None])
def test_a_transcription_refusal_about_the_file_or_nothing_blames_the_recording(
    client: httpx.Client, openai: FakeOpenAI, user: User, param: str | None
) -> None:
    openai.transcript = [refusal("invalid_value", param=param)]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"audio": b64(WAV)})
    assert (response.status_code, response.json()["rejected"]) == (422, "audio")


REFUSED_REQUESTS = {
    "diagnosis schema": ("replies", "invalid_json_schema", "response_format"),
    "transcription parameter": ("transcript", "unsupported_value", "response_format"),
}


@pytest.mark.parametrize(
    ("call", "code", "param"), REFUSED_REQUESTS.values(), ids=REFUSED_REQUESTS.keys()
)
def test_the_provider_refusing_our_own_request_is_a_502_logged_as_an_error(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    caplog: pytest.LogCaptureFixture,
    call: str,
    code: str,
    param: str,
) -> None:
    """A refusal naming a parameter we chose (a misconfigured model or schema) is ours to
    fix, never blamed on the user's recording or words."""
    setattr(openai, call, [refusal(code, param=param)])
    body = {"q": "hi", "audio": b64(WAV)}
    response = client.post("/diagnose2", headers=auth_headers(user), json=body)
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "upstream_error"
    assert any(
        record.levelname == "ERROR"
        and record.name == "api.services.ai"
        and code in record.getMessage()
        for record in caplog.records
    )
    assert count(session, DiagnosisUsage) == 0
