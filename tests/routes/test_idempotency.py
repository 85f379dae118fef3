"""Idempotency-Key through the local host: a retry gets the first answer (nothing done or
charged twice), a reused key with another request is refused, a key still running is 409,
failures keep nothing, keys expire; then, on a database of the test's own (real commits,
real threads, a real server the client gives up on), a dropped diagnosis retried with the
same key costs one provider call and one unit of quota, and parallel duplicates make one
vehicle."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.functions import ROUTE_PREFIX
from api.models import (
    ChatMessage,
    Conversation,
    DiagnosisUsage,
    IdempotencyKey,
    User,
    Vehicle,
    VehicleMod,
)
from devhost.server import serving
from tests.factories import PNG, auth_headers, b64, count, create_user
from tests.fake_openai import FakeOpenAI, Slow, error_response
from tests.harness import local_host

MX5 = {"make": "Mazda", "model": "MX-5", "year": 1990}
KEY = "9b0f7c1e-0c6a-4f55-9d7e-6f1d2a3b4c5d"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def keyed(user: User, key: str = KEY) -> dict[str, str]:
    return auth_headers(user) | {"Idempotency-Key": key}


JSON = {"Content-Type": "application/json"}


# --- the garage: one transaction per request -------------------------------------------------


def test_a_retried_vehicle_is_created_once_and_answered_as_the_first_time(
    client: httpx.Client, session: Session, user: User
) -> None:
    first = client.post("/vehicles", json=MX5, headers=keyed(user))
    again = client.post("/vehicles", json=MX5, headers=keyed(user))

    assert first.status_code == again.status_code == 201
    assert again.content == first.content
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Content-Type"] == "application/json"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]  # this request's
    assert count(session, Vehicle, Vehicle.user_id == user.id) == 1
    without_key = client.post("/vehicles", json=MX5, headers=auth_headers(user))
    assert without_key.status_code == 201  # no key: every request is new
    assert count(session, Vehicle, Vehicle.user_id == user.id) == 2


def test_a_retried_mod_is_created_once(client: httpx.Client, session: Session, user: User) -> None:
    vehicle = client.post("/vehicles", json=MX5, headers=auth_headers(user)).json()
    mods = f"/vehicles/{vehicle['id']}/mods"
    first = client.post(mods, json={"name": "Turbo kit"}, headers=keyed(user))
    again = client.post(mods, json={"name": "Turbo kit"}, headers=keyed(user))
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert count(session, VehicleMod) == 1


def test_the_quoted_form_of_the_draft_is_the_same_key(
    client: httpx.Client, session: Session, user: User
) -> None:
    first = client.post("/vehicles", json=MX5, headers=keyed(user, KEY))
    again = client.post("/vehicles", json=MX5, headers=keyed(user, f'"{KEY}"'))
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()


def test_a_key_used_with_another_request_is_refused(
    client: httpx.Client, session: Session, user: User
) -> None:
    vehicle = client.post("/vehicles", json=MX5, headers=keyed(user)).json()
    other_body = client.post("/vehicles", json=MX5 | {"year": 1991}, headers=keyed(user))
    same_bytes_reformatted = client.post(
        "/vehicles", content=json.dumps(MX5, indent=2), headers=keyed(user) | JSON
    )
    other_path = client.post(
        f"/vehicles/{vehicle['id']}/mods", json={"name": "Exhaust"}, headers=keyed(user)
    )
    for refused in (other_body, same_bytes_reformatted, other_path):
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "idempotency_key_reused"
        assert refused.json()["field"] == "Idempotency-Key"
    assert count(session, Vehicle) == 1
    assert count(session, VehicleMod) == 0


def test_keys_belong_to_their_user(client: httpx.Client, session: Session, user: User) -> None:
    mine = client.post("/vehicles", json=MX5, headers=keyed(user))
    theirs = client.post("/vehicles", json=MX5, headers=keyed(create_user(session)))
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]


@pytest.mark.parametrize(
    "key",
    ["short", "x" * 256, "has space in it", 'quote"inside', '"unterminated', "key-123456;x=1"],
)
def test_a_malformed_key_is_422_naming_the_header(
    client: httpx.Client, session: Session, user: User, key: str
) -> None:
    headers = auth_headers(user) | {"Idempotency-Key": key}
    response = client.post("/vehicles", json=MX5, headers=headers)
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "header.Idempotency-Key"
    assert count(session, Vehicle) == 0


def test_a_failure_is_not_kept_so_its_retry_runs_anew(
    client: httpx.Client, session: Session, user: User
) -> None:
    vin = {"vin": "JM1NA3512L0100001"}
    taken = client.post("/vehicles", json=MX5 | vin, headers=auth_headers(user)).json()
    refused = client.post("/vehicles", json=MX5 | vin, headers=keyed(user))
    assert refused.json()["code"] == "vin_taken"
    client.delete(f"/vehicles/{taken['id']}", headers=auth_headers(user))

    retried = client.post("/vehicles", json=MX5 | vin, headers=keyed(user))
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert count(session, IdempotencyKey, IdempotencyKey.user_id == user.id) == 1


def test_keys_expire_after_24_hours_and_are_swept(
    client: httpx.Client, session: Session, user: User, time_machine
) -> None:
    time_machine.move_to(START, tick=False)
    client.post("/vehicles", json=MX5, headers=keyed(user, "old-key-1"))
    client.post("/vehicles", json=MX5, headers=keyed(user, "old-key-2"))

    time_machine.move_to(START + timedelta(hours=23, minutes=59), tick=False)
    kept = client.post("/vehicles", json=MX5, headers=keyed(user, "old-key-1"))
    assert kept.headers["Idempotent-Replayed"] == "true"

    time_machine.move_to(START + timedelta(hours=24, seconds=1), tick=False)
    reused = client.post("/vehicles", json=MX5 | {"year": 2001}, headers=keyed(user, "old-key-1"))
    assert reused.status_code == 201  # a new request: the old key is gone
    assert reused.json()["year"] == "2001"
    keys = session.scalars(select(IdempotencyKey.key).where(IdempotencyKey.user_id == user.id))
    assert list(keys) == ["old-key-1"]  # its new life; old-key-2 was swept


# --- diagnose2: the turn's three steps ---------------------------------------------------------


def usage(client: httpx.Client, user: User) -> dict:
    response = client.get("/me/usage", headers=auth_headers(user))
    assert response.status_code == 200
    return response.json()


def test_a_retried_diagnosis_is_answered_again_without_a_provider_call_or_a_charge(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    body = {"q": "Rattle at 3000 rpm", "images": [b64(PNG)]}
    first = client.post("/diagnose2", json=body, headers=keyed(user))
    calls = len(openai.chat_bodies)
    again = client.post("/diagnose2", json=body, headers=keyed(user))

    assert first.status_code == again.status_code == 200, again.text
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Language"] == "en"
    assert len(openai.chat_bodies) == calls  # no provider call
    assert usage(client, user)["diagnoses_today"] == 1  # one charge
    assert again.headers["RateLimit"].startswith('"diagnoses";r=49;')
    assert count(session, ChatMessage) == 2


def test_a_diagnosis_key_reused_for_another_question_is_refused_before_any_work(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    client.post("/diagnose2", json={"q": "Rattle"}, headers=keyed(user))
    calls = len(openai.chat_bodies)
    other = client.post("/diagnose2", json={"q": "Squeal"}, headers=keyed(user))
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert len(openai.chat_bodies) == calls


def test_a_multipart_retry_with_a_new_boundary_is_the_same_request(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    def post(boundary: str) -> httpx.Response:
        parts = [
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="q"\r\n\r\nRattle\r\n'
            ).encode(),
            f'--{boundary}\r\nContent-Disposition: form-data; name="images"; '
            f'filename="a.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
            + PNG
            + b"\r\n",
            f"--{boundary}--\r\n".encode(),
        ]
        headers = keyed(user) | {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        return client.post("/diagnose2", content=b"".join(parts), headers=headers)

    first, again = post("first-boundary-1234"), post("other-boundary-5678")
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(openai.diagnosis_bodies) == 1


def test_a_failed_diagnosis_keeps_nothing_so_its_retry_asks_the_provider_again(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    openai.replies = [error_response(500)]
    failed = client.post("/diagnose2", json={"q": "Rattle"}, headers=keyed(user))
    assert failed.status_code == 502
    retried = client.post("/diagnose2", json={"q": "Rattle"}, headers=keyed(user))
    assert retried.status_code == 200, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert len(openai.diagnosis_bodies) == 2
    assert usage(client, user)["diagnoses_today"] == 1


def _fingerprint(path: str, body: bytes) -> bytes:
    """The documented fingerprint: SHA-256 of method, path and body bytes."""
    return hashlib.sha256(f"POST /{ROUTE_PREFIX}/{path}\n".encode() + body).digest()


def _left_running(session: Session, user: User, body: bytes, *, until: datetime) -> None:
    """What a process that died mid-turn leaves: its reservation and its key, both running
    until `until`."""
    began = until - timedelta(minutes=4)
    session.add(DiagnosisUsage(user_id=user.id, created_at=began, pending_until=until))
    session.add(
        IdempotencyKey(
            user_id=user.id,
            key=KEY,
            fingerprint=_fingerprint("diagnose2", body),
            created_at=began,
            expires_at=began + timedelta(hours=24),
            locked_until=until,
        )
    )
    session.flush()


def test_a_key_still_running_is_409_with_retry_after(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    body = json.dumps({"q": "Rattle"}).encode()
    _left_running(session, user, body, until=datetime.now(UTC) + timedelta(minutes=3))
    response = client.post("/diagnose2", content=body, headers=keyed(user) | JSON)
    assert response.status_code == 409
    assert response.json()["code"] == "request_in_progress"
    assert response.headers["Retry-After"] == "5"
    assert response.json()["retry_after"] == 5
    assert openai.untouched


def test_the_key_of_a_turn_that_died_lasts_as_long_as_its_reservation(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    body = json.dumps({"q": "Rattle"}).encode()
    _left_running(session, user, body, until=datetime.now(UTC) - timedelta(seconds=1))
    response = client.post("/diagnose2", content=body, headers=keyed(user) | JSON)
    assert response.status_code == 200, response.text  # runs anew, nobody locked out
    assert "Idempotent-Replayed" not in response.headers
    assert len(openai.diagnosis_bodies) == 1
    again = client.post("/diagnose2", content=body, headers=keyed(user) | JSON)
    assert again.headers["Idempotent-Replayed"] == "true"


# --- real commits, real threads, a real server --------------------------------------------------


@pytest.fixture
def owner(committed: Session) -> User:
    return create_user(committed)


@pytest.fixture
def headers(committed: Session, owner: User) -> dict[str, str]:
    bearer = auth_headers(owner)
    committed.commit()
    return bearer


@pytest.fixture
def live_api(own_database: str) -> Iterator[str]:
    """The API served by devhost's waitress on a free port, in a thread: a client there can
    give up on a request (a dropped connection) while the server finishes it."""
    with serving(local_host(), host="127.0.0.1", port=0, threads=4) as server:
        yield f"http://127.0.0.1:{server.effective_port}/{ROUTE_PREFIX}"


def test_a_dropped_diagnosis_retried_with_its_key_costs_one_provider_call_and_one_quota_unit(
    live_api: str,
    committed: Session,
    owner: User,
    headers: dict[str, str],
    busy_provider: FakeOpenAI,
) -> None:
    busy_provider.replies = [Slow(1.5)]
    body = {"q": "Knocking when cold", "images": [b64(PNG)]}
    keyed_headers = headers | {"Idempotency-Key": KEY}
    with httpx.Client(base_url=live_api) as app:
        with pytest.raises(httpx.ReadTimeout):  # the phone lost its connection
            app.post("/diagnose2", json=body, headers=keyed_headers, timeout=0.3)
        _wait_for(lambda: busy_provider.diagnosis_bodies)  # the server goes on with it
        statuses = []
        give_up = time.monotonic() + 15
        while time.monotonic() < give_up:  # the app retries, as Retry-After says
            retried = app.post("/diagnose2", json=body, headers=keyed_headers, timeout=10)
            statuses.append(retried.status_code)
            if retried.status_code != 409:
                break
            assert retried.json()["code"] == "request_in_progress"
            assert 1 <= int(retried.headers["Retry-After"]) <= 5
            time.sleep(0.2)
        quota = app.get("/me/usage", headers=headers).json()

    assert retried.status_code == 200, retried.text
    assert statuses[0] == 409  # the first was still with the provider
    assert retried.headers["Idempotent-Replayed"] == "true"
    assert len(busy_provider.diagnosis_bodies) == 1  # one provider call
    assert quota["diagnoses_today"] == 1  # one quota unit
    assert count(committed, DiagnosisUsage) == 1
    assert count(committed, ChatMessage) == 2
    (answer,) = committed.scalars(select(ChatMessage.id).where(ChatMessage.role == "assistant"))
    assert retried.json()["message_id"] == str(answer)


def _wait_for(condition: Callable[[], object], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_parallel_duplicates_create_one_vehicle_and_all_get_its_answer(
    committed: Session,
    owner: User,
    headers: dict[str, str],
    new_client: Callable[[], httpx.Client],
) -> None:
    start = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def post() -> None:
        with new_client() as client:
            start.wait()
            answers.append(
                client.post("/vehicles", json=MX5, headers=headers | {"Idempotency-Key": KEY})
            )

    threads = [threading.Thread(target=post) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert [answer.status_code for answer in answers] == [201] * 6
    assert len({answer.content for answer in answers}) == 1
    assert sum("Idempotent-Replayed" in answer.headers for answer in answers) == 5
    assert count(committed, Vehicle) == 1


def test_parallel_duplicate_diagnoses_run_one_turn(
    committed: Session,
    owner: User,
    headers: dict[str, str],
    busy_provider: FakeOpenAI,
    new_client: Callable[[], httpx.Client],
) -> None:
    busy_provider.replies = [Slow(1.0)]
    start = threading.Barrier(4)
    answers: list[tuple[int, str | bool]] = []

    def post() -> None:
        with new_client() as client:
            start.wait()
            response = client.post(
                "/diagnose2", json={"q": "Whine"}, headers=headers | {"Idempotency-Key": KEY}
            )
            replayed = "Idempotent-Replayed" in response.headers
            answers.append((response.status_code, response.json().get("code") or replayed))

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert answers.count((200, False)) == 1  # one turn ran; the others waited or replayed
    assert set(answers) <= {(200, False), (409, "request_in_progress"), (200, True)}
    assert len(busy_provider.diagnosis_bodies) == 1
    assert count(committed, DiagnosisUsage) == 1
    assert count(committed, Conversation) == 1
