"""POST /api/diagnose2 and the legacy GET/POST /api/Diagnose, with the real `openai` SDK
talking to a local OpenAI-compatible server."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import time_machine
from pytest_httpserver import HTTPServer
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import (
    ChatAttachment,
    ChatMessage,
    Conversation,
    DiagnosisUsage,
    User,
    Vehicle,
    VehicleMod,
)
from api.utils.deadline import Deadline
from tests.factories import auth_headers, create_user
from tests.fake_openai import DIAGNOSIS, FakeOpenAI, Slow, error_response, openai_settings

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(40))
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)
OGG = b"OggS\x00\x02" + bytes(40)
SYSTEM_PROMPT = Path("api/prompts/diagnostician.md").read_text(encoding="utf-8").strip()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def user(session: Session) -> User:
    return create_user(session)


@pytest.fixture
def turn_budget(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Shrink the next turns' time budget: DIAGNOSE_DEADLINE_S cannot go below 10 s, and no
    test should wait that long."""

    def shrink(seconds: float) -> None:
        monkeypatch.setattr(
            Deadline, "after", classmethod(lambda cls, _: cls(time.monotonic() + seconds))
        )

    return shrink


def add_message(
    session: Session, conversation: Conversation, role: str, content: dict, minutes_ago: int
) -> ChatMessage:
    message = ChatMessage(
        conversation_id=conversation.id,
        role=role,
        content=content,
        created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )
    session.add(message)
    session.flush()
    return message


def count(session: Session, model, *where) -> int:
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where))


def stored_turns(session: Session, conversation_id: uuid.UUID) -> list[ChatMessage]:
    session.expire_all()
    return list(
        session.scalars(
            select(ChatMessage)
            .where(ChatMessage.conversation_id == conversation_id)
            .order_by(ChatMessage.created_at, ChatMessage.id)
        )
    )


def test_v2_sends_vehicle_history_codes_and_images_and_stores_the_turn(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    vehicle = Vehicle(
        user_id=user.id,
        make="Mazda",
        model="3",
        year="2015",
        submodel="Touring",
        vin="JM1BM1V74F1234567",
    )
    session.add(vehicle)
    session.flush()
    session.add(
        VehicleMod(
            vehicle_id=vehicle.id,
            name="Cold air intake",
            description="K&N 63-series",
            installed_on=date(2024, 5, 1),
        )
    )
    conversation = Conversation(user_id=user.id, vehicle_id=vehicle.id, title="Cold start")
    session.add(conversation)
    session.flush()
    # Two turns as migration 04 left them, one with an image stored the new way.
    add_message(session, conversation, "user", {"content": "My car hesitates when cold"}, 40)
    add_message(session, conversation, "assistant", {"content": "Could be the thermostat."}, 39)
    add_message(
        session,
        conversation,
        "user",
        {
            "text": "Here is the engine bay",
            "attachments": [{"id": str(uuid.uuid4()), "kind": "image"}],
        },
        30,
    )
    add_message(session, conversation, "assistant", {"answer": "The hoses look fine."}, 29)
    question = "Check light came on, code p0420 and now P0301?"

    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        json={
            "q": question,
            "session_id": str(conversation.id),
            "dtc_codes": ["P0420", "b0001"],
            "images": [f"data:image/jpeg;base64,{b64(PNG)}"],  # declared JPEG, really PNG
            "image": b64(JPEG),
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    (sent,) = openai.chat_bodies  # an existing conversation: no title call
    assert sent["model"] == "gpt-4o-mini"
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "diagnosis"
    assert sent["response_format"]["json_schema"]["strict"] is True
    assert sent["messages"] == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {
            "role": "system",
            "content": "The driver's vehicle: 2015 Mazda 3 Touring.\nVIN: JM1BM1V74F1234567\n"
            "Installed modifications:\n- Cold air intake: K&N 63-series (installed 2024-05-01)",
        },
        {"role": "user", "content": "My car hesitates when cold"},
        {"role": "assistant", "content": "Could be the thermostat."},
        {
            "role": "user",
            "content": "Here is the engine bay\n\n"
            "[1 photo(s) sent with this message earlier; not shown again]",
        },
        {"role": "assistant", "content": "The hoses look fine."},
        {
            "role": "user",
            "content": [
                {
                    "type": "text",
                    "text": f"{question}\n\nFault codes:\n"
                    "- P0420: Catalyst System Efficiency Below Threshold "
                    "[powertrain, generic, subsystem: auxiliary emission controls]\n"
                    "- B0001: no standard description (meaning not known to us) "
                    "[body, generic]\n"
                    "- P0301: Cylinder 1 Misfire Detected "
                    "[powertrain, generic, subsystem: ignition system or misfire]",
                },
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64(PNG)}"}},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64(JPEG)}"}},
            ],
        },
    ]

    assert body["session_id"] == str(conversation.id)
    assert body["diagnosis"] == DIAGNOSIS
    assert body["usage"] == {"prompt_tokens": 321, "completion_tokens": 54}
    assert body["answer"].startswith("The catalytic converter is likely failing.")
    assert "**Severity:** Medium · **Safe to drive:** Yes" in body["answer"]
    assert "1. **Worn catalytic converter** (high likelihood)" in body["answer"]

    *_, question_row, answer_row = stored_turns(session, conversation.id)
    assert str(answer_row.id) == body["message_id"]
    assert answer_row.role == "assistant"
    assert answer_row.content == {
        "answer": body["answer"],
        "diagnosis": DIAGNOSIS,
        "model": "gpt-4o-mini-2024-07-18",
        "usage": {"prompt_tokens": 321, "completion_tokens": 54},
    }
    attachments = session.scalars(
        select(ChatAttachment).where(ChatAttachment.message_id == question_row.id)
    ).all()
    by_mime = {a.mime_type: a for a in attachments}
    assert set(by_mime) == {"image/png", "image/jpeg"}
    png = by_mime["image/png"]
    assert (png.kind, png.size_bytes, png.data) == ("image", len(PNG), PNG)
    assert png.sha256 == hashlib.sha256(PNG).hexdigest()
    assert png.conversation_id == conversation.id
    assert question_row.content["text"] == question
    assert question_row.content["dtc_codes"] == ["P0420", "B0001", "P0301"]
    assert sorted(a["sha256"] for a in question_row.content["attachments"]) == sorted(
        a.sha256 for a in attachments
    )
    assert b64(PNG)[:20] not in json.dumps(question_row.content)  # no raw Base64 stored
    session.refresh(conversation)
    assert conversation.title == "Cold start"
    assert conversation.updated_at > conversation.created_at


def test_history_is_cut_to_the_window_and_earlier_images_are_not_resent(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    conversation = Conversation(user_id=user.id, title="Long one")
    session.add(conversation)
    session.flush()
    for turn in range(3):
        add_message(session, conversation, "user", {"text": f"question {turn}"}, 50 - 2 * turn)
        add_message(session, conversation, "assistant", {"answer": f"answer {turn}"}, 49 - 2 * turn)
    with openai_settings(DIAGNOSE_HISTORY_TURNS="2"):
        first = client.post(
            "/diagnose2",
            headers=auth_headers(user),
            json={"q": "photo attached", "session_id": str(conversation.id), "images": [b64(PNG)]},
        )
        second = client.post(
            "/diagnose2",
            headers=auth_headers(user),
            json={"q": "and now?", "session_id": str(conversation.id)},
        )
    assert first.status_code == second.status_code == 200
    history = [m["content"] for m in openai.diagnosis_bodies[0]["messages"][1:-1]]
    assert history == ["question 1", "answer 1", "question 2", "answer 2"]
    latest = openai.diagnosis_bodies[1]["messages"]
    assert [m["content"] for m in latest[1:3]] == ["question 2", "answer 2"]
    assert latest[3] == {
        "role": "user",
        "content": "photo attached\n\n[1 photo(s) sent with this message earlier; not shown again]",
    }
    assert "base64" not in json.dumps(latest)


def test_new_conversation_is_created_with_a_title_from_a_second_call(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    vehicle = Vehicle(user_id=user.id, make="Subaru", model="Outback", year="2012")
    session.add(vehicle)
    session.flush()
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        json={"q": "Squeal when braking", "vehicle_id": str(vehicle.id)},
    )
    assert response.status_code == 200, response.text
    diagnosis_call, title_call = openai.chat_bodies
    assert openai.chat_timeouts == [5.0, 5.0]  # OPENAI_TIMEOUT_S: well within the budget
    assert diagnosis_call["messages"][1]["content"] == (
        "The driver's vehicle: 2012 Subaru Outback.\nNo modifications recorded."
    )
    assert title_call["model"] == "gpt-4o-mini"
    assert title_call["messages"][-1] == {"role": "user", "content": "Squeal when braking"}
    conversation = session.get(Conversation, uuid.UUID(response.json()["session_id"]))
    assert conversation.user_id == user.id
    assert conversation.vehicle_id == vehicle.id
    assert conversation.title == "Catalyst warning on the motorway"
    assert [m.role for m in stored_turns(session, conversation.id)] == ["user", "assistant"]


def test_title_falls_back_to_the_opening_words_when_the_title_call_fails(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    openai.title = error_response(500)
    question = "My engine makes a ticking noise after it warms up on long drives"
    with openai_settings(OPENAI_MAX_RETRIES="2"):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": question})
        one_long_word = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a" * 900})
    assert response.status_code == one_long_word.status_code == 200
    conversation = session.get(Conversation, uuid.UUID(response.json()["session_id"]))
    assert conversation.title == "My engine makes a ticking noise after it…"
    title_calls = [b for b in openai.chat_bodies if "response_format" not in b]
    assert len(title_calls) == 2  # a nicety: never retried, the turn does not wait on it
    long_one = session.get(Conversation, uuid.UUID(one_long_word.json()["session_id"]))
    assert long_one.title == "a" * 199 + "…"  # fits what PATCH accepts (200 characters)


def test_multipart_with_image_and_audio_files_is_transcribed_and_stored(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        data={"q": "Listen to this", "dtc_codes": "P0420, U0100"},
        files=[
            ("images", ("engine.bin", PNG, "application/octet-stream")),
            ("images", ("dash.jpg", JPEG, "image/jpeg")),
            ("audio", ("noise.ogg", OGG, "audio/wav")),
        ],
    )
    assert response.status_code == 200, response.text
    (transcription,) = openai.transcriptions
    assert transcription.form["model"] == "gpt-4o-mini-transcribe"
    assert transcription.data == OGG
    assert transcription.filename == "recording.ogg"
    assert transcription.mimetype == "audio/ogg"
    (sent,) = openai.diagnosis_bodies
    text, png, jpeg = sent["messages"][-1]["content"]
    assert "- U0100: Lost Communication With ECM/PCM A" in text["text"]
    assert "- P0301: Cylinder 1 Misfire Detected" in text["text"]  # spoken in the recording
    assert text["text"].endswith(
        "Transcript of the attached recording:\n"
        "It rattles when I accelerate past 3000 rpm, code P0301 came up."
    )
    assert png["image_url"]["url"].startswith("data:image/png;base64,")
    assert jpeg["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert all(m["model"] == "gpt-4o-mini" for m in openai.chat_bodies)
    assert "input_audio" not in json.dumps(openai.chat_bodies)  # no audio model configured

    question, _ = stored_turns(session, uuid.UUID(response.json()["session_id"]))
    assert question.content["transcript"] == openai.transcript
    kinds = sorted((a["kind"], a["mime_type"]) for a in question.content["attachments"])
    assert kinds == [("audio", "audio/ogg"), ("image", "image/jpeg"), ("image", "image/png")]


def test_audio_model_hears_wav_as_input_audio_and_only_it_does(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    with openai_settings(OPENAI_AUDIO_MODEL="gpt-4o-audio-preview"):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"audio": b64(WAV)})
        assert response.status_code == 200, response.text
        ogg = client.post("/diagnose2", headers=auth_headers(user), json={"audio": b64(OGG)})
        assert ogg.status_code == 200
    audio_calls = [b for b in openai.chat_bodies if "input_audio" in json.dumps(b)]
    (listen,) = audio_calls  # the OGG recording is not sent to it
    assert listen["model"] == "gpt-4o-audio-preview"
    assert listen["messages"][0]["content"][1] == {
        "type": "input_audio",
        "input_audio": {"data": b64(WAV), "format": "wav"},
    }
    first_diagnosis = openai.diagnosis_bodies[0]
    assert first_diagnosis["model"] == "gpt-4o-mini"
    assert first_diagnosis["messages"][-1]["content"].endswith(
        "Analysis of the recording's sound:\nA metallic rattle rising with engine speed."
    )


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


def test_codes_explained_per_turn_are_capped(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    question = " ".join(f"P0{number:03d}" for number in range(100, 700))
    response = client.post(
        "/diagnose2", headers=auth_headers(user), json={"q": question, "dtc_codes": ["U0100"]}
    )
    assert response.status_code == 200, response.text
    text = openai.diagnosis_bodies[0]["messages"][-1]["content"]
    explained = [line for line in text.split("\n") if line.startswith("- ")]
    assert len(explained) == 30
    assert explained[0].startswith("- U0100: Lost Communication With ECM/PCM A")


def test_legacy_mods_are_bounded(client: httpx.Client, openai: FakeOpenAI, user: User) -> None:
    for mods in (["Turbo"] * 31, ["x" * 101], "y" * 2001):
        response = client.post(
            "/Diagnose", headers=auth_headers(user), json={"q": "Rough idle", "mods": mods}
        )
        assert response.status_code == 422, mods
        assert response.json()["errors"][0]["field"].startswith("body.mods")
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


def test_request_must_carry_something_to_diagnose(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "  "})
    assert response.status_code == 422
    assert "at least one of q" in response.text
    bad_code = client.post("/diagnose2", headers=auth_headers(user), json={"dtc_codes": ["X1"]})
    assert bad_code.json()["errors"][0]["field"] == "body.dtc_codes.0"


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
    conversation = Conversation(user_id=user.id, title="Existing")
    session.add(conversation)
    session.flush()
    add_message(session, conversation, "user", {"text": "before"}, 5)
    add_message(session, conversation, "assistant", {"answer": "earlier"}, 4)
    openai.replies = list(replies)
    with openai_settings(OPENAI_TIMEOUT_S="0.5"):
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
    with openai_settings(
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


def test_another_users_conversation_or_vehicle_is_404_and_nothing_is_appended(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    owner = create_user(session)
    theirs = Conversation(user_id=owner.id, title="Private")
    their_vehicle = Vehicle(user_id=owner.id, make="BMW", model="M3", year="2020")
    session.add_all([theirs, their_vehicle])
    session.flush()
    for body in (
        {"q": "hi", "session_id": str(theirs.id)},
        {"q": "hi", "session_id": str(uuid.uuid4())},
        {"q": "hi", "vehicle_id": str(their_vehicle.id)},
    ):
        response = client.post("/diagnose2", headers=auth_headers(user), json=body)
        assert response.status_code == 404, body
    legacy = client.get(
        "/Diagnose", headers=auth_headers(user), params={"q": "hi", "session_id": str(theirs.id)}
    )
    assert legacy.status_code == 404
    assert count(session, ChatMessage, ChatMessage.conversation_id == theirs.id) == 0
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert openai.untouched


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
    assert openai.diagnosis_bodies[0]["messages"][1]["content"] == (
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


def test_daily_diagnosis_cap_is_429_with_retry_after(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    with openai_settings(DIAGNOSES_PER_DAY="1"):
        assert client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"}).is_success
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "b"})
    assert response.status_code == 429
    assert response.json()["code"] == "diagnosis_quota_exceeded"
    assert 0 < int(response.headers["Retry-After"]) <= 24 * 3600
    assert count(session, Conversation, Conversation.user_id == user.id) == 1


def test_deleting_conversations_does_not_give_diagnoses_back(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    with openai_settings(DIAGNOSES_PER_DAY="1"):
        first = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
        deleted = client.delete(
            f"/conversations/{first.json()['session_id']}", headers=auth_headers(user)
        )
        again = client.post("/diagnose2", headers=auth_headers(user), json={"q": "b"})
    assert (first.status_code, deleted.status_code) == (200, 204)
    assert again.status_code == 429
    assert again.json()["code"] == "diagnosis_quota_exceeded"
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert len(openai.diagnosis_bodies) == 1


def test_failed_turns_are_not_charged(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    openai.replies = [error_response(500), error_response(429)]
    with openai_settings(DIAGNOSES_PER_DAY="1"):
        failures = [
            client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"}) for _ in range(2)
        ]
        success = client.post("/diagnose2", headers=auth_headers(user), json={"q": "b"})
        over = client.post("/diagnose2", headers=auth_headers(user), json={"q": "c"})
    assert [r.status_code for r in failures] == [502, 502]
    assert (success.status_code, over.status_code) == (200, 429)
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == user.id) == 1


def test_quota_counts_the_ledger_prunes_it_and_retry_after_follows_its_oldest_row(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    now = datetime(2025, 8, 1, 12, tzinfo=UTC)
    other = create_user(session)
    session.add_all(
        [
            DiagnosisUsage(user_id=user.id, created_at=now - timedelta(hours=25)),
            DiagnosisUsage(user_id=user.id, created_at=now - timedelta(hours=23)),
            DiagnosisUsage(user_id=other.id, created_at=now - timedelta(hours=25)),
        ]
    )
    session.flush()
    with openai_settings(DIAGNOSES_PER_DAY="2"), time_machine.travel(now, tick=False):
        allowed = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
        refused = client.post("/diagnose2", headers=auth_headers(user), json={"q": "b"})
    assert allowed.status_code == 200
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "3600"  # when the 23-hour-old row leaves
    session.expire_all()
    mine = session.scalars(
        select(DiagnosisUsage.created_at)
        .where(DiagnosisUsage.user_id == user.id)
        .order_by(DiagnosisUsage.created_at)
    ).all()
    assert mine == [now - timedelta(hours=23), now]  # the row past the window is gone
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == other.id) == 1


def test_deleting_the_account_deletes_its_usage_ledger(
    client: httpx.Client, openai: FakeOpenAI, session: Session
) -> None:
    user = create_user(session, password="correct horse battery staple")
    assert client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"}).is_success
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == user.id) == 1
    response = client.request(
        "DELETE",
        "/me",
        headers=auth_headers(user),
        json={"password": "correct horse battery staple"},
    )
    assert response.status_code == 204
    assert count(session, DiagnosisUsage) == 0


def test_the_turn_budget_cuts_a_slow_call(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    turn_budget(1.5)
    openai.replies = [Slow(2.0)]  # within OPENAI_TIMEOUT_S (5 s), past the budget
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    (timeout,) = openai.chat_timeouts
    assert 1.0 <= timeout <= 1.5  # what was left of the budget, not OPENAI_TIMEOUT_S
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert count(session, DiagnosisUsage) == 0


def test_no_call_starts_once_the_budget_is_spent(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    conversation = Conversation(user_id=user.id, title="Existing")
    session.add(conversation)
    session.flush()
    add_message(session, conversation, "user", {"text": "before"}, 5)
    add_message(session, conversation, "assistant", {"answer": "earlier"}, 4)
    turn_budget(1.5)
    # The first reply breaks the schema after 0.6 s: less than a second is left for the retry.
    openai.replies = [Slow(0.6, "not json")]
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        json={"q": "again", "session_id": str(conversation.id), "images": [b64(PNG)]},
    )
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    assert "ran out of time" in response.json()["detail"]
    assert len(openai.chat_bodies) == 1
    assert [m.content for m in stored_turns(session, conversation.id)] == [
        {"text": "before"},
        {"answer": "earlier"},
    ]
    assert count(session, ChatAttachment) == 0
    assert count(session, DiagnosisUsage) == 0


def test_the_title_call_is_skipped_when_little_time_is_left(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    turn_budget(3.0)
    response = client.post(
        "/diagnose2", headers=auth_headers(user), json={"q": "Squeal when braking"}
    )
    assert response.status_code == 200, response.text
    assert len(openai.chat_bodies) == 1  # the diagnosis only
    conversation = session.get(Conversation, uuid.UUID(response.json()["session_id"]))
    assert conversation.title == "Squeal when braking"
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == user.id) == 1


def test_a_retry_waits_what_the_provider_asks_when_it_fits(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    busy = error_response(429)
    busy.headers["retry-after-ms"] = "700"
    openai.replies = [busy]
    with openai_settings(OPENAI_MAX_RETRIES="1"):
        started = time.monotonic()
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
    assert response.status_code == 200
    assert len(openai.diagnosis_bodies) == 2
    assert time.monotonic() - started >= 0.7  # not the 0.5 s backoff alone


def test_a_retry_after_past_the_budget_fails_at_once(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    turn_budget(3.0)
    busy = error_response(429)
    busy.headers["Retry-After"] = "100"  # the SDK itself would sleep 100 s
    openai.replies = [busy]
    with openai_settings(OPENAI_MAX_RETRIES="2"):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_rate_limited"
    assert len(openai.diagnosis_bodies) == 1


def test_no_retry_when_it_would_not_fit_the_budget(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    turn_budget(1.4)  # a pause (0.5 s) and another attempt (at least 1 s) do not fit
    openai.replies = [error_response(500)]
    with openai_settings(OPENAI_MAX_RETRIES="2"):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
    assert response.status_code == 502
    assert len(openai.diagnosis_bodies) == 1


def test_messages_per_conversation_cap_is_429(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    with openai_settings(MESSAGES_PER_CONVERSATION="3"):
        first = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
        session_id = first.json()["session_id"]
        response = client.post(
            "/diagnose2", headers=auth_headers(user), json={"q": "b", "session_id": session_id}
        )
    assert response.status_code == 429
    assert response.json()["code"] == "conversation_full"
    assert "new conversation" in response.json()["detail"]
    assert len(stored_turns(session, uuid.UUID(session_id))) == 2


def recorded_metrics(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict, dict]]:
    return [
        (r.metric, r.metric_measurements, r.metric_properties)
        for r in caplog.records
        if r.name == "api.metrics"
    ]


def test_duration_and_every_calls_tokens_are_recorded(
    client: httpx.Client, openai: FakeOpenAI, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    openai.replies = ["{not json"]  # the schema retry is paid for too
    with (
        openai_settings(OPENAI_AUDIO_MODEL="gpt-4o-audio-preview"),
        caplog.at_level(logging.INFO, logger="api.metrics"),
    ):
        response = client.post(
            "/diagnose2",
            headers=auth_headers(user),
            json={"q": "a", "audio": b64(WAV), "images": [b64(PNG)], "dtc_codes": ["P0420"]},
        )
    assert response.status_code == 200
    recorded = recorded_metrics(caplog)
    (duration,) = [m for m in recorded if m[0] == "diagnose_duration_ms"]
    assert duration[1]["duration_ms"] > 0
    assert duration[2] == {
        "route": "v2",
        "outcome": "ok",
        "model": "gpt-4o-mini",
        "images": 1,
        "audio": True,
        "dtc_count": 1,
    }
    chat = "gpt-4o-mini-2024-07-18"
    tokens = [(m[1], m[2]) for m in recorded if m[0] == "openai_tokens"]
    billed = {"prompt_tokens": 321, "completion_tokens": 54}
    assert tokens == [
        (
            {"prompt_tokens": 80, "completion_tokens": 12},
            {"model": "gpt-4o-mini-transcribe", "call": "transcription"},
        ),
        (billed, {"model": "gpt-4o-audio-preview", "call": "sound"}),
        (billed, {"model": chat, "call": "diagnosis"}),
        (billed, {"model": chat, "call": "diagnosis"}),
        (billed, {"model": chat, "call": "title"}),
    ]


@pytest.mark.parametrize(
    ("reply", "outcome", "diagnosis_calls"),
    [(error_response(500), "upstream_error", 0), ("not json", "upstream_invalid_reply", 2)],
)
def test_failed_turns_record_their_duration_outcome_and_paid_tokens(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    caplog: pytest.LogCaptureFixture,
    reply,
    outcome: str,
    diagnosis_calls: int,
) -> None:
    openai.replies = [reply, reply]
    with caplog.at_level(logging.INFO, logger="api.metrics"):
        response = client.get("/Diagnose", headers=auth_headers(user), params={"q": "a"})
    assert response.status_code == 502
    recorded = recorded_metrics(caplog)
    (duration,) = [m for m in recorded if m[0] == "diagnose_duration_ms"]
    assert duration[2]["route"] == "legacy"
    assert duration[2]["outcome"] == outcome
    calls = [m[2]["call"] for m in recorded if m[0] == "openai_tokens"]
    assert calls == ["diagnosis"] * diagnosis_calls


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


def test_legacy_needs_a_question(client: httpx.Client, openai: FakeOpenAI, user: User) -> None:
    assert client.get("/Diagnose", headers=auth_headers(user)).status_code == 422
    response = client.post("/Diagnose", headers=auth_headers(user), json={"make": "Ford"})
    assert response.status_code == 422
    assert "at least one of q, image or audio" in response.text


def test_history_from_the_old_inline_format_keeps_text_and_drops_images(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    conversation = Conversation(user_id=user.id, title="Old app")
    session.add(conversation)
    session.flush()
    inline = [
        {"type": "text", "text": "What is this warning light?"},
        {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{b64(JPEG)}"}},
    ]
    add_message(session, conversation, "user", {"content": inline}, 10)
    add_message(session, conversation, "assistant", {"content": "The oil light."}, 9)
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        json={"q": "Is it safe?", "session_id": str(conversation.id)},
    )
    assert response.status_code == 200
    assert openai.diagnosis_bodies[0]["messages"][1:3] == [
        {
            "role": "user",
            "content": "What is this warning light?\n\n"
            "[1 photo(s) sent with this message earlier; not shown again]",
        },
        {"role": "assistant", "content": "The oil light."},
    ]


def test_half_configured_azure_is_not_configured(
    client: httpx.Client, session: Session, user: User
) -> None:
    with openai_settings(
        OPENAI_API_KEY="sk-test", AZURE_OPENAI_ENDPOINT="https://example.openai.azure.com"
    ):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hello"})
    assert response.status_code == 503
    assert response.json()["code"] == "ai_not_configured"


def test_diagnose_body_cap_comes_from_its_setting(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    with openai_settings(DIAGNOSE_MAX_BODY_BYTES="2048"):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "x" * 3000})
    assert response.status_code == 413
    assert "2048" in response.json()["detail"]
    assert openai.untouched
