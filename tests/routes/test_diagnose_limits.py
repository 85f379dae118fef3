"""Diagnosis caps: DIAGNOSES_PER_DAY over a usage ledger (429 with Retry-After; deleting
conversations gives nothing back, failed turns cost nothing), MESSAGES_PER_CONVERSATION,
and one turn per user at a time, holding the rows it links to."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from sqlalchemy import create_engine, event, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from api.models import Conversation, DiagnosisUsage, User, Vehicle
from tests.factories import add_conversation, auth_headers, count, create_user, stored_turns
from tests.fake_openai import FakeOpenAI, error_response
from tests.harness import changed_settings


def test_daily_diagnosis_cap_is_429_with_retry_after(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    with changed_settings(DIAGNOSES_PER_DAY="1"):
        assert client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"}).is_success
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "b"})
    assert response.status_code == 429
    assert response.json()["code"] == "diagnosis_quota_exceeded"
    assert 0 < int(response.headers["Retry-After"]) <= 24 * 3600
    assert count(session, Conversation, Conversation.user_id == user.id) == 1


def test_deleting_conversations_does_not_give_diagnoses_back(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    with changed_settings(DIAGNOSES_PER_DAY="1"):
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
    with changed_settings(DIAGNOSES_PER_DAY="1"):
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
    with changed_settings(DIAGNOSES_PER_DAY="2"), time_machine.travel(now, tick=False):
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


def test_messages_per_conversation_cap_is_429(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    with changed_settings(MESSAGES_PER_CONVERSATION="3"):
        first = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
        session_id = first.json()["session_id"]
        response = client.post(
            "/diagnose2", headers=auth_headers(user), json={"q": "b", "session_id": session_id}
        )
    assert response.status_code == 429
    assert response.json()["code"] == "conversation_full"
    assert "new conversation" in response.json()["detail"]
    assert len(stored_turns(session, uuid.UUID(session_id))) == 2


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
    conversation = add_conversation(session, user.id, title="Old", vehicle_id=vehicle.id)
    headers = auth_headers(user)
    statements: list[str] = []

    def keep(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(connection, "before_cursor_execute", keep)
    try:
        response = client.post(
            "/diagnose2", headers=headers, json={"q": "hi", "session_id": str(conversation.id)}
        )
    finally:
        event.remove(connection, "before_cursor_execute", keep)
    assert response.status_code == 200, response.text
    locked = [s for s in statements if s.endswith("FOR KEY SHARE")]
    assert [s.split(" WHERE ")[0].rsplit(" FROM ", 1)[1] for s in locked] == [
        "conversations",
        "vehicles",
    ]
