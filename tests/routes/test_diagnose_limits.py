"""Diagnosis caps: DIAGNOSES_PER_DAY over a usage ledger (429 with Retry-After; deleting
conversations gives nothing back, failed turns cost nothing), MESSAGES_PER_CONVERSATION,
and one turn per user at a time (a reservation the database allows once per user, which a
dead process cannot hold forever). Real concurrency: test_diagnose_steps.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from api.models import AttachmentBlob, ChatAttachment, Conversation, DiagnosisUsage, User
from tests.factories import (
    JPEG,
    PNG,
    add_conversation,
    add_image,
    add_message,
    auth_headers,
    b64,
    count,
    create_user,
    stored_turns,
)
from tests.fake_openai import FakeOpenAI, error_response
from tests.harness import changed_settings


def ledger(session: Session, user: User, column: InstrumentedAttribute[Any]) -> list[Any]:
    """`column` of the user's diagnosis_usage rows, oldest first."""
    rows = session.scalars(
        select(column).where(DiagnosisUsage.user_id == user.id).order_by(DiagnosisUsage.created_at)
    )
    return list(rows.all())


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
    mine = ledger(session, user, DiagnosisUsage.created_at)
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


@pytest.mark.parametrize(
    ("reserved_for", "retry_after"),
    [
        # Running, 2 minutes before its deadline (the reservation lasts 60 s past it).
        (timedelta(minutes=3), 120),
        # Past its deadline: its process died (or it is storing); its reservation expires.
        (timedelta(seconds=30), 30),
    ],
)
def test_a_second_turn_while_one_runs_is_429_at_once(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    reserved_for: timedelta,
    retry_after: int,
) -> None:
    running = DiagnosisUsage(user_id=user.id, pending_until=datetime.now(UTC) + reserved_for)
    session.add(running)  # a turn in flight: its reservation
    session.flush()

    busy = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hi"})

    assert busy.status_code == 429
    assert busy.json()["code"] == "diagnosis_in_progress"
    assert busy.json()["detail"] == (
        "A diagnosis is already running for your account; wait for it to finish"
    )
    # Whole seconds, rounded up from what was left when the server looked.
    assert retry_after - 1 <= int(busy.headers["Retry-After"]) <= retry_after
    assert openai.untouched
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == user.id) == 1


def test_a_reservation_left_by_a_dead_process_expires_and_is_never_charged(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    now = datetime(2025, 8, 1, 12, tzinfo=UTC)
    session.add(DiagnosisUsage(user_id=user.id, created_at=now, pending_until=now))
    session.flush()
    with changed_settings(DIAGNOSES_PER_DAY="1"), time_machine.travel(now, tick=False):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "hi"})
    assert response.status_code == 200, response.text
    session.expire_all()
    ledger = session.scalars(select(DiagnosisUsage).where(DiagnosisUsage.user_id == user.id)).all()
    assert [(row.created_at, row.pending_until) for row in ledger] == [(now, None)]


def test_files_a_dead_process_wrote_go_with_its_expired_reservation(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    """A turn writes its files while the provider works; a process that died then left them
    with no message referring to them: the user's next turn removes them with the
    reservation, so no bytes stay that nobody can see (or delete)."""
    now = datetime(2025, 8, 1, 12, tzinfo=UTC)
    session.add(DiagnosisUsage(user_id=user.id, created_at=now, pending_until=now))
    session.add(AttachmentBlob(user_id=user.id, sha256="0" * 64, data=JPEG))
    session.flush()
    with time_machine.travel(now, tick=False):
        response = client.post(
            "/diagnose2", headers=auth_headers(user), json={"q": "hi", "images": [b64(PNG)]}
        )
    assert response.status_code == 200, response.text
    session.expire_all()
    stored = session.scalars(select(AttachmentBlob.data).where(AttachmentBlob.user_id == user.id))
    assert stored.all() == [PNG]


def test_a_file_sent_again_is_stored_once_and_counts_once(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    photo = {"q": "Leak under the car", "images": [b64(PNG), b64(PNG)]}
    first = client.post("/diagnose2", headers=auth_headers(user), json=photo)
    session_id = first.json()["session_id"]
    again = client.post(
        "/diagnose2", headers=auth_headers(user), json={**photo, "session_id": session_id}
    )
    other = create_user(session)
    theirs = client.post("/diagnose2", headers=auth_headers(other), json=photo)
    assert [r.status_code for r in (first, again, theirs)] == [200, 200, 200]

    session.expire_all()
    assert count(session, ChatAttachment) == 6  # every message keeps its attachments
    blobs = session.scalars(select(AttachmentBlob).order_by(AttachmentBlob.created_at)).all()
    assert [(blob.user_id, blob.data) for blob in blobs] == [(user.id, PNG), (other.id, PNG)]
    assert ledger(session, user, DiagnosisUsage.attachment_bytes) == [len(PNG), 0]


def test_the_daily_attachment_allowance_is_429_naming_it(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    now = datetime(2025, 8, 1, 12, tzinfo=UTC)
    allowance = 60_000_000
    stored = add_conversation(session, user.id, title="Earlier")
    add_image(session, add_message(session, stored, "user", {"text": "a"}, 60), JPEG)
    session.add_all(
        [  # 100 bytes short of the allowance, stored 23 and 2 hours ago
            DiagnosisUsage(
                user_id=user.id, created_at=now - timedelta(hours=23), attachment_bytes=40_000_000
            ),
            DiagnosisUsage(
                user_id=user.id,
                created_at=now - timedelta(hours=2),
                attachment_bytes=allowance - 40_000_100,
            ),
        ]
    )
    session.flush()
    new_photo = PNG + bytes(101)
    with (
        changed_settings(ATTACHMENT_BYTES_PER_DAY=str(allowance)),
        time_machine.travel(now, tick=False),
    ):
        over = client.post(
            "/diagnose2", headers=auth_headers(user), json={"q": "a", "images": [b64(new_photo)]}
        )
        sent_before = client.post(
            "/diagnose2", headers=auth_headers(user), json={"q": "b", "images": [b64(JPEG)]}
        )
    assert over.status_code == 429
    assert over.json()["code"] == "attachment_quota_exceeded"
    assert "ATTACHMENT_BYTES_PER_DAY" in over.json()["detail"]
    assert over.headers["Retry-After"] == str(3600)  # when the 23-hour-old bytes leave
    assert len(openai.diagnosis_bodies) == 1  # only the turn that fits reached the provider
    assert sent_before.status_code == 200  # a file stored before costs nothing
    assert count(session, AttachmentBlob, AttachmentBlob.user_id == user.id) == 1


def test_at_the_attachment_allowance_only_new_files_count(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    """A turn that would pass the allowance if all its files were new is looked at file by
    file: files stored before count nothing, a file sent twice counts once."""
    now = datetime(2025, 8, 1, 12, tzinfo=UTC)
    allowance = 60_000_000
    stored = add_conversation(session, user.id, title="Earlier")
    add_image(session, add_message(session, stored, "user", {"text": "a"}, 60), JPEG)
    left = len(PNG) + 10  # room for the new photo once, not twice, nor with the old one
    session.add(
        DiagnosisUsage(
            user_id=user.id, created_at=now - timedelta(hours=1), attachment_bytes=allowance - left
        )
    )
    session.flush()
    turns = (
        {"q": "a", "images": [b64(PNG), b64(PNG), b64(JPEG)]},  # fits: PNG once, JPEG stored
        {"q": "b", "images": [b64(PNG + b"!"), b64(PNG)]},  # the new file does not fit now
    )
    with (
        changed_settings(ATTACHMENT_BYTES_PER_DAY=str(allowance)),
        time_machine.travel(now, tick=False),
    ):
        fits, over = (client.post("/diagnose2", headers=auth_headers(user), json=t) for t in turns)
    assert fits.status_code == 200, fits.text
    assert over.status_code == 429
    assert over.json()["code"] == "attachment_quota_exceeded"
    session.expire_all()
    assert ledger(session, user, DiagnosisUsage.attachment_bytes) == [allowance - left, len(PNG)]
