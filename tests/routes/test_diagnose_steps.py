"""The diagnosis turn's three steps on a database of the test's own (every request really
commits), directly and through PgBouncer: no connection is held while the provider works;
a turn racing the deletion of its conversation, vehicle or account ends cleanly, never
half-written; and with real threads, one turn per user runs at a time and the daily cap is
exact."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import ColumnElement, create_engine, delete, func, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool, QueuePool

from api import db
from api.models import (
    AttachmentBlob,
    Base,
    ChatAttachment,
    ChatMessage,
    Conversation,
    DiagnosisUsage,
    User,
    Vehicle,
)
from tests.factories import (
    PASSWORD,
    PNG,
    add_conversation,
    add_image,
    add_message,
    auth_headers,
    b64,
    create_user,
)
from tests.fake_openai import FakeOpenAI
from tests.harness import changed_settings, terminate_app_connections
from tests.outbox import Outbox


@pytest.fixture
def owner(committed: Session) -> User:
    return create_user(committed, password=PASSWORD)


@pytest.fixture
def headers(committed: Session, owner: User) -> dict[str, str]:
    """The owner's Bearer header, with everything arranged so far committed."""
    bearer = auth_headers(owner)
    committed.commit()
    return bearer


def rows(model: type[Base], *where: ColumnElement[bool]) -> int:
    with Session(db.get_engine()) as session:
        return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def ledger(user: User) -> list[tuple[Any, int]]:
    """The user's diagnosis_usage rows: (pending_until, attachment_bytes)."""
    with Session(db.get_engine()) as session:
        return [
            (row.pending_until, row.attachment_bytes)
            for row in session.scalars(
                select(DiagnosisUsage).where(DiagnosisUsage.user_id == user.id)
            )
        ]


def test_no_connection_is_held_while_the_provider_answers(
    own_database: str,
    owner: User,
    headers: dict[str, str],
    provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    observer = create_engine(
        own_database, poolclass=NullPool, connect_args={"prepare_threshold": None}
    )
    seen: list[tuple[int, list[str]]] = []

    def look() -> None:
        """Once the image is written (on a thread of its own while the provider works, its
        connection then back in the pool), what holds a connection."""
        pool = db.get_engine().pool
        assert isinstance(pool, QueuePool)
        with observer.connect() as connection:
            for _ in range(500):
                written = connection.execute(text("SELECT count(*) FROM attachment_blobs"))
                if written.scalar() and pool.checkedout() == 0:
                    break
                time.sleep(0.01)
            states = connection.execute(
                text(
                    "SELECT coalesce(state, '') FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalars()
            seen.append((pool.checkedout(), sorted(set(states))))

    provider.meanwhile = look
    with new_client() as client:
        response = client.post(
            "/diagnose2",
            headers=headers,
            json={"q": "Knocking at idle", "images": [b64(PNG)]},
        )
    observer.dispose()

    assert response.status_code == 200, response.text
    ((checked_out, states),) = seen
    assert checked_out == 0  # not even the caller's authentication
    assert "idle in transaction" not in states
    assert "active" not in states
    assert rows(ChatMessage) == 2


def _delete_during_the_call(
    provider: FakeOpenAI, new_client: Callable[[], httpx.Client], method: str, path: str, **kw: Any
) -> list[int]:
    """Have the provider, while it answers, make the owner's client delete something; the
    statuses the deletion got."""
    statuses: list[int] = []

    def delete() -> None:
        with new_client() as other:
            statuses.append(other.request(method, path, **kw).status_code)

    provider.meanwhile = delete
    return statuses


def test_a_turn_whose_conversation_is_deleted_meanwhile_is_discarded_and_charged(
    own_database: str,
    committed: Session,
    owner: User,
    provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    conversation = add_conversation(committed, owner.id, title="Rattle")
    add_image(committed, add_message(committed, conversation, "user", {"text": "a"}, 5))
    add_message(committed, conversation, "assistant", {"answer": "b"}, 4)
    headers = auth_headers(owner)
    committed.commit()
    deletions = _delete_during_the_call(
        provider,
        new_client,
        "DELETE",
        f"/conversations/{conversation.id}",
        headers=headers,
    )

    with new_client() as client:
        response = client.post(
            "/diagnose2",
            headers=headers,
            json={"q": "Still rattling", "session_id": str(conversation.id), "images": [b64(PNG)]},
        )

    assert deletions == [204]  # the deletion did not wait for the provider
    assert response.status_code == 404
    assert response.json()["detail"] == "No such conversation"
    for model in (Conversation, ChatMessage, ChatAttachment, AttachmentBlob):
        assert rows(model) == 0, model
    assert ledger(owner) == [(None, 0)]  # the provider was paid: the turn counts


def test_a_turn_whose_vehicle_is_deleted_meanwhile_is_stored_unlinked(
    own_database: str,
    committed: Session,
    owner: User,
    provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    vehicle = Vehicle(user_id=owner.id, make="Subaru", model="Outback", year="2017")
    committed.add(vehicle)
    headers = auth_headers(owner)
    committed.commit()
    deletions = _delete_during_the_call(
        provider, new_client, "DELETE", f"/vehicles/{vehicle.id}", headers=headers
    )

    with new_client() as client:
        response = client.post(
            "/diagnose2",
            headers=headers,
            json={"q": "Whine in fourth gear", "vehicle_id": str(vehicle.id)},
        )

    assert deletions == [204]
    assert response.status_code == 200, response.text
    assert "Subaru" in str(provider.diagnosis_bodies[0]["messages"])
    with Session(db.get_engine()) as session:
        stored = session.get(Conversation, uuid.UUID(response.json()["session_id"]))
        assert stored is not None
        assert stored.vehicle_id is None
    assert rows(Vehicle) == 0
    assert rows(ChatMessage) == 2
    assert ledger(owner) == [(None, 0)]


def test_a_turn_whose_account_is_deleted_meanwhile_is_401_and_leaves_nothing(
    own_database: str,
    owner: User,
    headers: dict[str, str],
    provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    deletions = _delete_during_the_call(
        provider,
        new_client,
        "DELETE",
        "/me",
        headers=headers,
        json={"password": PASSWORD},
    )

    with new_client() as client:
        response = client.post(
            "/diagnose2",
            headers=headers,
            json={"q": "Smoke from the bonnet", "images": [b64(PNG)]},
        )

    assert deletions == [204]
    assert response.status_code == 401
    assert response.json()["code"] == "account_deleted"
    assert response.json()["detail"] == "The account no longer exists"
    for model in (User, Conversation, ChatMessage, AttachmentBlob, DiagnosisUsage):
        assert rows(model) == 0, model


NEW_PASSWORD = "An entirely new passphrase 7"


def _reset_password(client: httpx.Client, owner: User, outbox: Outbox) -> httpx.Response:
    client.post("/request_password_reset_pin", json={"email": owner.email})
    pin = outbox.pin_for(owner.email)
    return client.post(
        "/confirm_password_reset",
        json={"email": owner.email, "pin": pin, "new_password": NEW_PASSWORD},
    )


# Each way the turn's session can end while the provider answers (with the owner's client).
SESSION_ENDINGS: dict[str, Callable[[httpx.Client, dict[str, str], User, Outbox], httpx.Response]]
SESSION_ENDINGS = {
    "logout": lambda client, headers, owner, outbox: client.post("/logout", headers=headers),
    "logout everywhere": lambda client, headers, owner, outbox: client.post(
        "/logout", headers=headers, json={"all": True}
    ),
    "password change": lambda client, headers, owner, outbox: client.post(
        "/change_password",
        headers=headers,
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    ),
    "password reset": lambda client, headers, owner, outbox: _reset_password(client, owner, outbox),
}


@pytest.mark.parametrize("end", SESSION_ENDINGS.values(), ids=SESSION_ENDINGS.keys())
def test_a_turn_whose_session_ends_meanwhile_is_401_and_leaves_nothing(
    own_database: str,
    owner: User,
    headers: dict[str, str],
    provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
    outbox: Outbox,
    end: Callable[[httpx.Client, dict[str, str], User, Outbox], httpx.Response],
) -> None:
    endings: list[int] = []

    def end_the_session() -> None:
        with new_client() as other:
            endings.append(end(other, headers, owner, outbox).status_code)

    provider.meanwhile = end_the_session
    with new_client() as client:
        response = client.post(
            "/diagnose2", headers=headers, json={"q": "Smoke", "images": [b64(PNG)]}
        )

    (ended,) = endings
    assert ended < 300
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "session_ended"
    for model in (Conversation, ChatMessage, AttachmentBlob, DiagnosisUsage):
        assert rows(model) == 0, model


def test_one_turn_at_a_time_and_an_exact_daily_cap_with_parallel_requests(
    own_database: str,
    owner: User,
    headers: dict[str, str],
    busy_provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    answering = 0
    most_at_once = 0
    count_lock = threading.Lock()

    def answer_slowly() -> None:
        nonlocal answering, most_at_once
        with count_lock:
            answering += 1
            most_at_once = max(most_at_once, answering)
        time.sleep(0.2)
        with count_lock:
            answering -= 1

    busy_provider.meanwhile = answer_slowly
    answers: list[tuple[int, str | None]] = []

    def keep_asking() -> None:
        with new_client() as client:
            while True:
                response = client.post(
                    "/diagnose2", headers=headers, json={"q": "Misfire when cold"}
                )
                code = response.json().get("code")
                answers.append((response.status_code, code))
                if response.status_code != 200 and code != "diagnosis_in_progress":
                    return
                time.sleep(0.02)

    with changed_settings(DIAGNOSES_PER_DAY="3"):
        threads = [threading.Thread(target=keep_asking) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)

    assert answers.count((200, None)) == 3
    assert answers.count((429, "diagnosis_quota_exceeded")) == 6  # each thread's last
    assert {status for status, _ in answers} == {200, 429}
    assert most_at_once == 1
    assert ledger(owner) == [(None, 0)] * 3
    assert rows(Conversation) == 3


def test_a_turn_whose_reservation_was_taken_over_stores_nothing(
    own_database: str,
    owner: User,
    headers: dict[str, str],
    provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    """A turn that overran its reservation (it expired and the user's next turn cleared it)
    must not write after the fact."""

    def expire() -> None:
        with Session(db.get_engine()) as session:
            session.execute(delete(DiagnosisUsage).where(DiagnosisUsage.pending_until.is_not(None)))
            session.commit()

    provider.meanwhile = expire
    with new_client() as client:
        response = client.post("/diagnose2", headers=headers, json={"q": "Clunk over bumps"})

    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    for model in (Conversation, ChatMessage, DiagnosisUsage):
        assert rows(model) == 0, model


def test_a_turn_survives_a_database_restart_while_the_provider_answers(
    own_database: str,
    owner: User,
    headers: dict[str, str],
    provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    """A failover during the provider call closes every pooled connection: the turn's later
    units of work (it cannot be served again: the provider was paid) take live ones."""

    pool = db.get_engine().pool
    assert isinstance(pool, QueuePool)

    def restart() -> None:
        for _ in range(500):  # the image written, its connection back in the pool
            if rows(AttachmentBlob) and pool.checkedout() == 0:
                break
            time.sleep(0.01)
        terminate_app_connections(own_database)

    provider.meanwhile = restart
    with new_client() as client:
        response = client.post(
            "/diagnose2", headers=headers, json={"q": "Knocking at idle", "images": [b64(PNG)]}
        )

    assert response.status_code == 200, response.text
    assert rows(ChatMessage) == 2
    assert rows(AttachmentBlob) == 1
    assert [bytes_ for _, bytes_ in ledger(owner)] == [len(PNG)]


def test_a_turn_after_a_database_restart_reads_its_caller_again(
    own_database: str,
    owner: User,
    headers: dict[str, str],
    provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    """The caller is read as a GET reads (one statement, no transaction): a pooled
    connection the server has closed fails it, and it is read again on a live one."""
    with new_client() as client:
        first = client.post("/diagnose2", headers=headers, json={"q": "Knocking at idle"})
        terminate_app_connections(own_database)
        again = client.post("/diagnose2", headers=headers, json={"q": "Still knocking"})

    assert [first.status_code, again.status_code] == [200, 200], again.text
    assert rows(ChatMessage) == 4
