"""Real concurrency, on a database of this module's own (the shared rolled-back test
connection cannot show it): requests run in threads, each on its own pooled connection,
while the test holds locks from a connection of its own.

- 20 refreshes with one refresh token at once all succeed and the session lives on.
- A write racing the deletion of its account answers 401 or 404, never 500 or 503 (D5).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import Connection, Engine, create_engine, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from api.functions import ROUTE_PREFIX
from api.models import Conversation, RefreshToken, User, Vehicle
from api.utils.hashing import hash_password
from tests.factories import PASSWORD, bearer, new_email
from tests.harness import changed_settings, local_host, migrate


@pytest.fixture(scope="module")
def database(make_run_database: Callable[..., str]) -> Iterator[Engine]:
    """A migrated database of this module's own, served by the app for its tests."""
    uri = make_run_database()
    engine = create_engine(uri, poolclass=NullPool)
    with engine.connect() as connection:
        migrate(connection, "head")
    with changed_settings(DB_URI=uri, DB_POOL_SIZE="10"):
        yield engine
    engine.dispose()


def api() -> httpx.Client:
    """A client of the app (one per thread: each request then has its own connection)."""
    transport = httpx.WSGITransport(app=local_host())
    return httpx.Client(transport=transport, base_url=f"http://testserver/{ROUTE_PREFIX}")


def account(engine: Engine) -> tuple[uuid.UUID, dict]:
    """A committed account, logged in through the API: its id and token bundle."""
    email = new_email()
    with Session(engine) as session:
        user = User(email=email, password_hash=hash_password(PASSWORD))
        session.add(user)
        session.commit()
        user_id = user.id
    with api() as client:
        bundle = client.post("/login", json={"email": email, "password": PASSWORD}).json()
    return user_id, bundle


def vehicle_of(engine: Engine, user_id: uuid.UUID) -> uuid.UUID:
    """A committed vehicle of the user's."""
    with Session(engine) as session:
        vehicle = Vehicle(user_id=user_id, make="Mazda", model="MX-5", year="1990")
        session.add(vehicle)
        session.commit()
        return vehicle.id


def test_twenty_concurrent_refreshes_with_one_token_all_keep_the_session(
    database: Engine,
) -> None:
    """One success and the whole family revoked used to log the user out."""
    user_id, bundle = account(database)
    start = threading.Barrier(20)

    def refresh(_: int) -> httpx.Response:
        with api() as client:
            start.wait()
            return client.post("/auth/refresh", json={"refresh_token": bundle["refresh_token"]})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(refresh, range(20)))

    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    pairs = [r.json() for r in responses]
    assert len({pair["refresh_token"] for pair in pairs}) == 20
    with api() as client:
        for pair in pairs:
            assert client.get("/me", headers=bearer(pair["access_token"])).status_code == 200
        assert client.post("/auth/refresh", json={"refresh_token": pairs[7]["refresh_token"]})
    with Session(database) as session:
        family = session.scalars(select(RefreshToken).where(RefreshToken.user_id == user_id))
        live = [token for token in family if token.revoked_at is None]
    assert len(live) >= 20  # the siblings (one of them just rotated into its successor)


# --- D5: writes racing DELETE /api/me -------------------------------------------------------


def waiting_on_a_lock(connection: Connection) -> bool:
    """Is a request (the app's connections name themselves) blocked on a row lock?"""
    return bool(
        connection.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'axly-api'"
                " AND wait_event_type = 'Lock' AND datname = current_database()"
            )
        ).scalar_one()
    )


def racing_the_deletion(
    engine: Engine,
    user_id: uuid.UUID,
    request: Callable[[httpx.Client], httpx.Response],
    deletion: str = "DELETE FROM users WHERE id = :id",
) -> httpx.Response:
    """Delete the account (or run another `deletion` of `user_id`'s rows) in a transaction
    of our own, start `request` (authenticated while the account still exists), wait until
    it blocks on the deletion's locks, commit."""
    with engine.connect() as deleter, engine.connect() as observer, ThreadPoolExecutor(1) as pool:
        deleter.execute(text(deletion), {"id": user_id})
        with api() as client:
            pending = pool.submit(request, client)
            deadline = time.monotonic() + 10
            while not waiting_on_a_lock(observer):
                assert not pending.done(), pending.result().text
                assert time.monotonic() < deadline, "the request never waited for the deletion"
                time.sleep(0.01)
            deleter.commit()
            return pending.result(timeout=30)


def test_adding_a_vehicle_while_the_account_is_deleted(database: Engine) -> None:
    """Was a 500: the vehicle's foreign key to the deleted user."""
    user_id, bundle = account(database)
    response = racing_the_deletion(
        database,
        user_id,
        lambda client: client.post(
            "/vehicles",
            json={"make": "Mazda", "model": "MX-5", "year": 1990},
            headers=bearer(bundle["access_token"]),
        ),
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "account_deleted"


@pytest.mark.parametrize(
    ("deletion", "status"),
    [
        # Was a 500: the UPDATE found its row gone once the account's deletion committed.
        ("DELETE FROM users WHERE id = :id", 401),
        # Not the account: the same user deleting the vehicle from another device.
        ("DELETE FROM vehicles WHERE user_id = :id", 404),
    ],
)
def test_editing_a_vehicle_while_it_is_deleted(
    database: Engine, deletion: str, status: int
) -> None:
    user_id, bundle = account(database)
    vehicle_id = vehicle_of(database, user_id)
    response = racing_the_deletion(
        database,
        user_id,
        lambda client: client.patch(
            f"/vehicles/{vehicle_id}",
            json={"nickname": "Roadster"},
            headers=bearer(bundle["access_token"]),
        ),
        deletion=deletion,
    )
    assert response.status_code == status, response.text


def test_renaming_a_conversation_while_the_account_is_deleted(database: Engine) -> None:
    user_id, bundle = account(database)
    with Session(database) as session:
        conversation = Conversation(user_id=user_id, title="Before")
        session.add(conversation)
        session.commit()
        conversation_id = conversation.id
    response = racing_the_deletion(
        database,
        user_id,
        lambda client: client.patch(
            f"/conversations/{conversation_id}",
            json={"title": "After"},
            headers=bearer(bundle["access_token"]),
        ),
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "account_deleted"


def test_adding_a_mod_while_the_account_is_deleted(database: Engine) -> None:
    user_id, bundle = account(database)
    vehicle_id = vehicle_of(database, user_id)
    response = racing_the_deletion(
        database,
        user_id,
        lambda client: client.post(
            f"/vehicles/{vehicle_id}/mods",
            json={"name": "Exhaust"},
            headers=bearer(bundle["access_token"]),
        ),
    )
    # The vehicle went with the account: not a 404 about it, the account's 401.
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "account_deleted"


def test_refreshing_while_the_account_is_deleted(database: Engine) -> None:
    user_id, bundle = account(database)
    response = racing_the_deletion(
        database,
        user_id,
        lambda client: client.post(
            "/auth/refresh", json={"refresh_token": bundle["refresh_token"]}
        ),
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "account_deleted"


def _conversation_of(engine: Engine, user_id: uuid.UUID) -> uuid.UUID:
    with Session(engine) as session:
        conversation = Conversation(user_id=user_id, title="Before")
        session.add(conversation)
        session.commit()
        return conversation.id


# Writes on each area (vehicles, mods, conversations, me/*) that wait on the deletion's locks;
# each gets a request for the user's rows: (method, path, body).
RACING_WRITES: dict[str, Callable[[Engine, uuid.UUID], tuple[str, str, dict | None]]] = {
    "delete a vehicle": lambda db, uid: ("DELETE", f"/vehicles/{vehicle_of(db, uid)}", None),
    "replace a vehicle": lambda db, uid: (
        "PUT",
        f"/vehicles/{vehicle_of(db, uid)}",
        {"make": "Mazda", "model": "MX-5", "year": 1991},
    ),
    "delete a conversation": lambda db, uid: (
        "DELETE",
        f"/conversations/{_conversation_of(db, uid)}",
        None,
    ),
    "change the password": lambda db, uid: (
        "POST",
        "/change_password",
        {"current_password": PASSWORD, "new_password": "An entirely new passphrase 7"},
    ),
    "log out": lambda db, uid: ("POST", "/logout", None),
}


@pytest.mark.parametrize("write", RACING_WRITES.values(), ids=RACING_WRITES.keys())
def test_writes_racing_the_deletion_answer_401_account_deleted(
    database: Engine, write: Callable[[Engine, uuid.UUID], tuple[str, str, dict | None]]
) -> None:
    user_id, bundle = account(database)
    method, path, body = write(database, user_id)
    response = racing_the_deletion(
        database,
        user_id,
        lambda client: client.request(
            method, path, json=body, headers=bearer(bundle["access_token"])
        ),
    )
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "account_deleted"
