"""A login holds no database connection while bcrypt runs (it reads, lets the connection
go, checks the password, then writes), so logins in a burst cannot take the pool from
other requests; on a database of the test's own, directly and through PgBouncer."""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.orm import Session

from tests.factories import PASSWORD, auth_headers, create_user
from tests.harness import changed_settings, held_bcrypt_checks, terminate_app_connections

LOGINS = 4


def started_logins(
    new_client: Callable[[], httpx.Client], email: str, count: int
) -> tuple[list[threading.Thread], list[httpx.Response]]:
    """`count` logins of `email`, started, each on a thread with a client of its own (made
    here, one at a time: the first ones index the app), and the list their answers join."""
    answers: list[httpx.Response] = []

    def log_in(client: httpx.Client) -> None:
        with client:
            answers.append(client.post("/login", json={"email": email, "password": PASSWORD}))

    logins = [threading.Thread(target=log_in, args=(new_client(),)) for _ in range(count)]
    for login in logins:
        login.start()
    return logins, answers


def test_logins_inside_bcrypt_leave_a_pool_of_one_free_for_other_requests(
    own_database: str,
    committed: Session,
    new_client: Callable[[], httpx.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = create_user(committed, password=PASSWORD)
    headers = auth_headers(owner)
    committed.commit()
    hashing, finish = held_bcrypt_checks(monkeypatch)

    with changed_settings(
        DB_POOL_SIZE="1",
        DB_MAX_OVERFLOW="0",
        DB_POOL_TIMEOUT_S="2",
        BCRYPT_MAX_CONCURRENCY=str(LOGINS),
    ):
        logins, answers = started_logins(new_client, owner.email, LOGINS)
        inside = [hashing.acquire(timeout=10) for _ in range(LOGINS)]
        with new_client() as client:
            garage = client.get("/vehicles", headers=headers)
        finish.set()
        for login in logins:
            login.join(timeout=30)

    assert all(inside)  # every login was in its check at once, with one connection
    assert garage.status_code == 200, garage.text
    assert [answer.status_code for answer in answers] == [200] * LOGINS


def test_a_login_survives_a_database_restart_during_its_password_check(
    own_database: str,
    committed: Session,
    new_client: Callable[[], httpx.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its attempt is counted before the check and its session started after: a failover
    in between costs the user nothing (the unit of work after the check cannot be run
    again, so it takes a live connection)."""
    owner = create_user(committed, password=PASSWORD)
    committed.commit()
    hashing, finish = held_bcrypt_checks(monkeypatch)
    [login], answers = started_logins(new_client, owner.email, 1)
    assert hashing.acquire(timeout=10)
    terminate_app_connections(own_database)
    finish.set()
    login.join(timeout=30)

    [answer] = answers
    assert answer.status_code == 200, answer.text
    with new_client() as client:
        me = client.get("/me", headers={"Authorization": f"Bearer {answer.json()['access_token']}"})
    assert me.status_code == 200


def test_two_logins_that_both_rehash_the_password_both_succeed(
    own_database: str,
    committed: Session,
    new_client: Callable[[], httpx.Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hash of another cost (a changed BCRYPT_ROUNDS, a legacy hash) is replaced at the
    next login: two devices logging in at once both get in (neither a deadlock's 503 nor,
    the hash having changed under it, a wrong password), and the hash is of the new cost."""
    owner = create_user(committed, password=PASSWORD)  # at the tests' cost, 10
    committed.commit()
    hashing, finish = held_bcrypt_checks(monkeypatch)
    with changed_settings(BCRYPT_ROUNDS="11"):
        logins, answers = started_logins(new_client, owner.email, 2)
        assert all(hashing.acquire(timeout=10) for _ in logins)  # both checked the old hash
        finish.set()
        for login in logins:
            login.join(timeout=30)

    assert [answer.status_code for answer in answers] == [200, 200], [a.text for a in answers]
    committed.refresh(owner)
    assert owner.password_hash.split("$")[2] == "11"
