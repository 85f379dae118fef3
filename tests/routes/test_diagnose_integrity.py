"""A diagnosis turn never ends in a 500 once the provider is paid: text PostgreSQL cannot store
is refused (user input) or cleaned (provider output), a user's second turn is turned away
instead of holding a pooled connection, rows the turn links to cannot vanish under it, and
stored NULL roles (migration 04) neither break reads nor replay."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from api.models import ChatMessage, Conversation, DiagnosisUsage, User, Vehicle
from tests.factories import auth_headers, create_user
from tests.fake_openai import DIAGNOSIS, FakeOpenAI, openai_settings
from tests.routes.test_diagnose import WAV, add_message, b64, count, stored_turns


@pytest.fixture
def user(session: Session) -> User:
    return create_user(session)


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
    sent = {"params": fields} if method == "GET" else {"json": fields}
    response = client.request(method, path, headers=auth_headers(user), **sent)
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
    conversation = Conversation(user_id=user.id, title="Before")
    session.add(conversation)
    session.flush()
    response = client.patch(
        f"/conversations/{conversation.id}", headers=auth_headers(user), json={"title": "a\x00b"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.title"
    session.expire_all()
    assert session.get(Conversation, conversation.id).title == "Before"


def test_nul_characters_from_the_provider_are_dropped_before_storing(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    openai.replies = [
        {
            **DIAGNOSIS,
            "summary": "Cata\x00lyst",
            "likely_causes": [{"cause": "\x00", "likelihood": "high", "how_to_check": "L\x00ook"}],
            "next_steps": ["Dri\x00ve"],
        }
    ]
    openai.title = "Cat\x00alyst"
    openai.transcript = "A rat\x00tle"
    openai.sound = "Knock\x00ing"
    with openai_settings(OPENAI_AUDIO_MODEL="gpt-4o-audio-preview"):
        response = client.post(
            "/diagnose2", headers=auth_headers(user), json={"q": "hi", "audio": b64(WAV)}
        )
    assert response.status_code == 200, response.text
    schema = openai.diagnosis_bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["summary"] == {"title": "Summary", "type": "string"}
    diagnosis = response.json()["diagnosis"]
    assert diagnosis["summary"] == "Catalyst"
    assert diagnosis["likely_causes"][0] == {
        "cause": "",
        "likelihood": "high",
        "how_to_check": "Look",
    }
    assert diagnosis["next_steps"] == ["Drive"]
    conversation_id = uuid.UUID(response.json()["session_id"])
    question, answer = stored_turns(session, conversation_id)
    assert (question.content["transcript"], question.content["sound_analysis"]) == (
        "A rattle",
        "Knocking",
    )
    assert answer.content["diagnosis"] == diagnosis
    assert session.get(Conversation, conversation_id).title == "Catalyst"


@pytest.fixture
def second_connection(database_uri: str) -> Iterator[Connection]:
    """Another client of the test database, in its own transaction (rolled back at the end)."""
    engine = create_engine(database_uri)
    try:
        with engine.connect() as other:
            yield other
            other.rollback()
    finally:
        engine.dispose()


def test_a_second_turn_while_one_runs_is_429_and_holds_no_connection(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    second_connection: Connection,
) -> None:
    lock = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
    second_connection.execute(lock, {"key": f"diagnoses\n{user.id}"})  # a turn in flight

    busy = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hi"})

    assert busy.status_code == 429
    assert busy.json()["code"] == "diagnosis_in_progress"
    assert busy.json()["detail"] == (
        "A diagnosis is already running for your account; wait for it to finish"
    )
    assert busy.headers["Retry-After"] == "5"
    assert openai.untouched
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == user.id) == 0

    second_connection.rollback()  # that turn ends
    assert client.post("/diagnose2", headers=auth_headers(user), json={"q": "hi"}).is_success


def test_the_turn_key_share_locks_its_conversation_and_vehicle(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User, connection: Connection
) -> None:
    """So a concurrent DELETE of either waits for the turn instead of breaking its save."""
    vehicle = Vehicle(user_id=user.id, make="Mazda", model="3", year="2015")
    session.add(vehicle)
    session.flush()
    conversation = Conversation(user_id=user.id, title="Old", vehicle_id=vehicle.id)
    session.add(conversation)
    session.flush()
    statements: list[str] = []

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(connection, "before_cursor_execute", keep)
    try:
        response = client.post(
            "/diagnose2",
            headers=auth_headers(user),
            json={"q": "hi", "session_id": str(conversation.id)},
        )
    finally:
        event.remove(connection, "before_cursor_execute", keep)
    assert response.status_code == 200, response.text
    locked = [s for s in statements if s.endswith("FOR KEY SHARE")]
    assert [s.split(" WHERE ")[0].rsplit(" FROM ", 1)[1] for s in locked] == [
        "conversations",
        "vehicles",
    ]


def test_messages_with_no_role_are_shown_and_not_replayed(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    conversation = Conversation(user_id=user.id, title="Seeded")
    session.add(conversation)
    session.flush()
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
