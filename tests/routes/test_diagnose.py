"""POST /api/diagnose2: what a turn sends the provider (system prompt, vehicle, history,
question, photos, recording, fault codes) and what it stores, with the real `openai` SDK
talking to a local OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.models import (
    AttachmentBlob,
    ChatAttachment,
    ChatMessage,
    Conversation,
    User,
    Vehicle,
    VehicleMod,
)
from tests.factories import (
    JPEG,
    OGG,
    PNG,
    WAV,
    add_conversation,
    add_message,
    auth_headers,
    b64,
    count,
    create_user,
    stored_turns,
)
from tests.fake_openai import DIAGNOSIS, FakeOpenAI, error_response
from tests.harness import changed_settings

SYSTEM_PROMPT = Path("api/prompts/diagnostician.md").read_text(encoding="utf-8").strip()


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
    conversation = add_conversation(session, user.id, vehicle_id=vehicle.id, title="Cold start")
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
    assert (png.kind, png.size_bytes, session.get(AttachmentBlob, png.blob_id).data) == (
        "image",
        len(PNG),
        PNG,
    )
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
    conversation = add_conversation(session, user.id, title="Long one")
    for turn in range(3):
        add_message(session, conversation, "user", {"text": f"question {turn}"}, 50 - 2 * turn)
        add_message(session, conversation, "assistant", {"answer": f"answer {turn}"}, 49 - 2 * turn)
    with changed_settings(DIAGNOSE_HISTORY_TURNS="2"):
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


def test_history_from_the_old_inline_format_keeps_text_and_drops_images(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    conversation = add_conversation(session, user.id, title="Old app")
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


def test_messages_with_no_role_are_shown_and_not_replayed(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    conversation = add_conversation(session, user.id, title="Seeded")
    add_message(session, conversation, "user", {"content": "Squeaky brakes"}, 20)
    seeded = add_message(session, conversation, None, {"content": "seed note"}, 19)
    add_message(session, conversation, "assistant", {"content": "Check the pads."}, 18)

    shown = client.get(f"/conversations/{conversation.id}", headers=auth_headers(user))
    assert shown.status_code == 200, shown.text
    assert [m["role"] for m in shown.json()["messages"]] == ["user", None, "assistant"]
    assert shown.json()["messages"][1]["id"] == str(seeded.id)

    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        json={"q": "Still squeaks", "session_id": str(conversation.id)},
    )
    assert response.status_code == 200, response.text
    assert openai.diagnosis_bodies[0]["messages"][1:] == [
        {"role": "user", "content": "Squeaky brakes"},
        {"role": "assistant", "content": "Check the pads."},
        {"role": "user", "content": "Still squeaks"},
    ]
    assert len(stored_turns(session, conversation.id)) == 5
    assert session.scalar(select(ChatMessage.role).where(ChatMessage.id == seeded.id)) is None


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
    with changed_settings(OPENAI_MAX_RETRIES="2"):
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
    with changed_settings(OPENAI_AUDIO_MODEL="gpt-4o-audio-preview"):
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
