"""A 200 from the provider is not trusted (issue 10, D3 and D4): every reply that cannot
become a usable completion — by content type, JSON shape, missing or mistyped fields,
missing usage — is asked for once more, then answered 502 `upstream_invalid_reply` with
nothing stored; the title falls back instead; provider text is capped field by field. All
through the real openai SDK against the local stand-in provider."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session
from werkzeug import Response

from api.models import (
    AttachmentBlob,
    ChatAttachment,
    ChatMessage,
    Conversation,
    DiagnosisUsage,
    User,
)
from tests.factories import PNG, WAV, auth_headers, b64, count, stored_turns
from tests.fake_openai import (
    DIAGNOSIS,
    OPENAI_STRICT_KEYWORDS,
    FakeOpenAI,
    completion,
    json_response,
    schema_keywords,
)
from tests.harness import changed_settings


def without(key: str, **usage: Any) -> Response:
    """A completion of a valid diagnosis with `key` left out (or `usage` fields replaced)."""
    body = completion(json.dumps(DIAGNOSIS))
    if usage:
        body["usage"] = {**body["usage"], **usage}
    else:
        del body[key]
    return json_response(body)


def raw(body: str, content_type: str = "application/json") -> Response:
    return Response(body, status=200, content_type=content_type)


# What the issue saw answered with a 500, and its relatives: each cannot become a completion.
UNUSABLE = {
    "html": raw("<html><body>Bad gateway, but 200</body></html>", "text/html"),
    "json array": raw("[1, 2, 3]"),
    "json string": raw('"a completion"'),
    "json null": raw("null"),
    "not json at all": raw("{this is not json"),
    "no model": without("model"),
    "no usage": without("usage"),
    "null usage fields": without("usage", prompt_tokens=None, completion_tokens=None),
    "usage as strings": without("usage", prompt_tokens="321", completion_tokens="54"),
    "negative usage": without("usage", prompt_tokens=-5),
    "usage past an integer": without("usage", completion_tokens=2**31),
    "no choices field": without("choices"),
}


@pytest.mark.parametrize("reply", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_diagnosis_reply_twice_is_502_and_nothing_is_stored(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User, reply: Response
) -> None:
    openai.replies = [reply, reply]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hello"})
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "upstream_invalid_reply"
    assert len(openai.diagnosis_bodies) == 2  # the first reply and one retry
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == user.id) == 0


def test_a_failed_turn_leaves_none_of_the_files_it_wrote_meanwhile(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    openai.replies = [UNUSABLE["not json at all"]] * 2
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        json={"q": "Squeal on cold starts", "images": [b64(PNG)], "audio": b64(WAV)},
    )
    assert response.status_code == 502, response.text
    assert count(session, AttachmentBlob, AttachmentBlob.user_id == user.id) == 0
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == user.id) == 0


@pytest.mark.parametrize("reply", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_diagnosis_reply_once_is_retried(
    client: httpx.Client, openai: FakeOpenAI, user: User, reply: Response
) -> None:
    openai.replies = [reply]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hello"})
    assert response.status_code == 200, response.text
    assert len(openai.diagnosis_bodies) == 2
    # Only the usable reply reported what it cost.
    assert response.json()["usage"] == {"prompt_tokens": 321, "completion_tokens": 54}


@pytest.mark.parametrize("reply", UNUSABLE.values(), ids=UNUSABLE.keys())
def test_an_unusable_title_reply_falls_back_to_the_question(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User, reply: Response
) -> None:
    openai.title = reply
    response = client.post(
        "/diagnose2", headers=auth_headers(user), json={"q": "Knocking noise when cold"}
    )
    assert response.status_code == 200, response.text
    conversation = session.get(Conversation, uuid.UUID(response.json()["session_id"]))
    assert conversation.title == "Knocking noise when cold"


TRANSCRIPTION_UNUSABLE = {
    "html": raw("<html>oops</html>", "text/html"),
    "json array": raw("[]"),
    "no text": json_response({"usage": {"type": "duration", "seconds": 3}}),
    "text as a number": json_response({"text": 42}),
    "usage tokens as strings": json_response(
        {"text": "hi", "usage": {"type": "tokens", "input_tokens": "80", "output_tokens": 1}}
    ),
}


@pytest.mark.parametrize(
    "reply", TRANSCRIPTION_UNUSABLE.values(), ids=TRANSCRIPTION_UNUSABLE.keys()
)
def test_an_unusable_transcription_twice_is_502_and_nothing_is_stored(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User, reply: Response
) -> None:
    openai.transcript = [reply, reply]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"audio": b64(WAV)})
    assert response.status_code == 502, response.text
    assert response.json()["code"] == "upstream_invalid_reply"
    assert len(openai.transcriptions) == 2
    assert openai.diagnosis_bodies == []
    assert count(session, ChatAttachment) == 0


def test_an_unusable_transcription_once_is_retried(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    openai.transcript = [raw("<html>oops</html>", "text/html"), "It squeals when braking"]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"audio": b64(WAV)})
    assert response.status_code == 200, response.text
    question, _ = stored_turns(session, uuid.UUID(response.json()["session_id"]))
    assert question.content["transcript"] == "It squeals when braking"


def test_a_transcription_reporting_seconds_not_tokens_is_usable(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    openai.transcript = [
        json_response({"text": "Ticking", "usage": {"type": "duration", "seconds": 4}})
    ]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"audio": b64(WAV)})
    assert response.status_code == 200, response.text


def test_an_unusable_sound_analysis_twice_is_502(
    client: httpx.Client, httpserver, session: Session, user: User
) -> None:
    fake = FakeOpenAI(httpserver)
    fake.sound = "ignored"
    with changed_settings(
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=httpserver.url_for("/v1"),
        OPENAI_MAX_RETRIES="0",
        OPENAI_AUDIO_MODEL="gpt-4o-audio-preview",
    ):
        httpserver.clear()
        httpserver.expect_request("/v1/audio/transcriptions").respond_with_handler(fake._transcribe)
        httpserver.expect_request("/v1/chat/completions").respond_with_response(raw("[]"))
        response = client.post("/diagnose2", headers=auth_headers(user), json={"audio": b64(WAV)})
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_invalid_reply"


def test_provider_text_is_capped_field_by_field(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    """A 5 MB summary was stored and returned; the caps are also in the schema sent."""
    openai.replies = [
        {
            **DIAGNOSIS,
            "summary": "word " * 1_000_000,
            "next_steps": [f"Step {n}" for n in range(50)],
            "likely_causes": [{"cause": "x" * 5_000, "likelihood": "high", "how_to_check": "Look"}]
            * 9,
        }
    ]
    openai.title = "A title " * 100
    openai.transcript = "rattle " * 10_000
    response = client.post(
        "/diagnose2", headers=auth_headers(user), json={"q": "hi", "audio": b64(WAV)}
    )
    assert response.status_code == 200, response.text
    diagnosis = response.json()["diagnosis"]
    assert len(diagnosis["summary"]) <= 1500
    assert diagnosis["summary"].endswith("word…")
    assert len(diagnosis["next_steps"]) == 8
    assert len(diagnosis["likely_causes"]) == 6
    assert len(diagnosis["likely_causes"][0]["cause"]) == 200
    conversation = session.get(Conversation, uuid.UUID(response.json()["session_id"]))
    assert len(conversation.title or "") <= 200
    question, answer = stored_turns(session, conversation.id)
    assert len(question.content["transcript"]) <= 20_000
    assert answer.content["diagnosis"] == diagnosis
    assert len(json.dumps(answer.content)) < 100_000

    # The caps reach the model in the keywords OpenAI's strict mode documents (maxItems; not
    # maxLength, nor pydantic's title / default), and in words.
    schema = openai.diagnosis_bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema_keywords(schema) <= OPENAI_STRICT_KEYWORDS
    assert schema["properties"]["next_steps"]["maxItems"] == 8
    assert schema["properties"]["summary"]["description"] == "At most 1500 characters"
    assert schema["properties"]["next_steps"]["items"]["description"] == "At most 400 characters"


def test_a_stored_reply_is_never_half_written(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    openai.replies = [UNUSABLE["usage as strings"], UNUSABLE["html"]]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hello"})
    assert response.status_code == 502
    assert count(session, ChatMessage) == 0
