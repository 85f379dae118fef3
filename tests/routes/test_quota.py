"""The quota a mobile app shows: GET /api/me/usage, and the RateLimit-Policy / RateLimit
fields (draft-ietf-httpapi-ratelimit-headers-11) of diagnosis responses, 200s and 429s
alike, read back with a structured-field parser (and once as the exact text sent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from http_sf import parse
from sqlalchemy.orm import Session

from api.models import DiagnosisUsage, User
from tests.factories import PNG, WAV, auth_headers, b64, create_user
from tests.fake_openai import FakeOpenAI
from tests.harness import changed_settings

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
DAY = 86_400


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def fields(response: httpx.Response) -> tuple[Any, Any]:
    """Both fields as RFC 9651 Lists: [(policy, {parameter: value})]."""
    return (
        parse(response.headers["RateLimit-Policy"].encode(), tltype="list"),
        parse(response.headers["RateLimit"].encode(), tltype="list"),
    )


def test_a_new_account_has_its_whole_allowance(client: httpx.Client, user: User) -> None:
    response = client.get("/me/usage", headers=auth_headers(user))
    assert response.status_code == 200
    assert response.json() == {
        "diagnoses_today": 0,
        "diagnoses_per_day": 50,
        "diagnoses_remaining": 50,
        "resets_at": None,
        "attachment_bytes_today": 0,
        "attachment_bytes_per_day": 200_000_000,
        "attachment_bytes_remaining": 200_000_000,
        "attachment_bytes_resets_at": None,
        "diagnosis_running": False,
        "window_seconds": DAY,
    }
    assert response.headers["RateLimit-Policy"] == (
        '"diagnoses";q=50;w=86400, "attachment-bytes";q=200000000;qu="content-bytes";w=86400'
    )
    assert response.headers["RateLimit"] == (
        '"diagnoses";r=50;t=86400, "attachment-bytes";r=200000000;t=86400'
    )
    policy, left = fields(response)
    assert policy == [
        ("diagnoses", {"q": 50, "w": DAY}),
        ("attachment-bytes", {"q": 200_000_000, "qu": "content-bytes", "w": DAY}),
    ]
    assert left == [
        ("diagnoses", {"r": 50, "t": DAY}),
        ("attachment-bytes", {"r": 200_000_000, "t": DAY}),
    ]


def test_the_largest_allowances_settings_take_still_travel_in_the_fields(
    client: httpx.Client, user: User
) -> None:
    largest = 999_999_999_999_999
    with changed_settings(DIAGNOSES_PER_DAY=str(largest), ATTACHMENT_BYTES_PER_DAY=str(largest)):
        response = client.get("/me/usage", headers=auth_headers(user))
    assert response.status_code == 200
    policy, _ = fields(response)
    assert [params["q"] for _, params in policy] == [largest, largest]


def test_usage_counts_turns_and_new_bytes_over_a_sliding_day(
    client: httpx.Client, openai: FakeOpenAI, user: User, time_machine
) -> None:
    time_machine.move_to(START, tick=False)
    photo = client.post(
        "/diagnose2", json={"q": "Rattle", "images": [b64(PNG)]}, headers=auth_headers(user)
    )
    assert photo.status_code == 200, photo.text
    time_machine.move_to(START + timedelta(hours=2), tick=False)
    again = client.post(  # the same photo again stores nothing new
        "/diagnose2",
        json={"q": "Still", "images": [b64(PNG)], "audio": b64(WAV)},
        headers=auth_headers(user),
    )

    assert again.json()["language"] == "en"
    usage = client.get("/me/usage", headers=auth_headers(user)).json()
    assert usage | {"attachment_bytes_per_day": 0, "diagnoses_per_day": 0} == {
        "diagnoses_today": 2,
        "diagnoses_per_day": 0,
        "diagnoses_remaining": 48,
        "resets_at": iso(START + timedelta(days=1)),
        "attachment_bytes_today": len(PNG) + len(WAV),
        "attachment_bytes_per_day": 0,
        "attachment_bytes_remaining": 200_000_000 - len(PNG) - len(WAV),
        "attachment_bytes_resets_at": iso(START + timedelta(days=1)),
        "diagnosis_running": False,
        "window_seconds": DAY,
    }
    _, left = fields(again)  # what the turn's own response said
    two_hours = 2 * 3600
    assert left == [
        ("diagnoses", {"r": 48, "t": DAY - two_hours}),
        ("attachment-bytes", {"r": 200_000_000 - len(PNG) - len(WAV), "t": DAY - two_hours}),
    ]

    time_machine.move_to(START + timedelta(days=1, seconds=1), tick=False)
    later = client.get("/me/usage", headers=auth_headers(user)).json()
    assert (later["diagnoses_today"], later["resets_at"]) == (
        1,
        iso(START + timedelta(days=1, hours=2)),
    )
    assert later["attachment_bytes_today"] == len(WAV)


def test_a_running_turn_counts_at_once(client: httpx.Client, session: Session, user: User) -> None:
    now = datetime.now(UTC)
    session.add(
        DiagnosisUsage(user_id=user.id, created_at=now, pending_until=now + timedelta(minutes=3))
    )
    dead = create_user(session)  # a reservation whose process died counts no longer
    session.add(
        DiagnosisUsage(user_id=dead.id, created_at=now, pending_until=now - timedelta(seconds=1))
    )
    session.flush()
    running = client.get("/me/usage", headers=auth_headers(user)).json()
    assert (running["diagnoses_today"], running["diagnosis_running"]) == (1, True)
    gone = client.get("/me/usage", headers=auth_headers(dead)).json()
    assert (gone["diagnoses_today"], gone["diagnosis_running"]) == (0, False)


def test_a_refused_diagnosis_says_what_is_left_and_when_it_comes_back(
    client: httpx.Client, openai: FakeOpenAI, user: User, time_machine
) -> None:
    time_machine.move_to(START, tick=False)
    with changed_settings(DIAGNOSES_PER_DAY="1"):
        assert (
            client.post("/diagnose2", json={"q": "A"}, headers=auth_headers(user)).status_code
            == 200
        )
        time_machine.move_to(START + timedelta(hours=1), tick=False)
        refused = client.post("/diagnose2", json={"q": "B"}, headers=auth_headers(user))

    assert refused.status_code == 429
    assert refused.json()["code"] == "diagnosis_quota_exceeded"
    policy, left = fields(refused)
    assert policy[0] == ("diagnoses", {"q": 1, "w": DAY})
    assert left[0] == ("diagnoses", {"r": 0, "t": DAY - 3600})  # not counting the refused one
    assert int(refused.headers["Retry-After"]) == DAY - 3600  # no earlier than t
    exposed = refused.headers["Access-Control-Expose-Headers"]
    assert {"RateLimit", "RateLimit-Policy"} <= {name.strip() for name in exposed.split(",")}


def test_every_429_of_a_diagnosis_carries_the_fields(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    now = datetime.now(UTC)
    session.add(
        DiagnosisUsage(user_id=user.id, created_at=now, pending_until=now + timedelta(minutes=3))
    )
    session.flush()
    busy = client.post("/diagnose2", json={"q": "A"}, headers=auth_headers(user))
    legacy = client.get("/Diagnose", params={"q": "A"}, headers=auth_headers(user))
    for refused in (busy, legacy):
        assert refused.status_code == 429
        assert refused.json()["code"] == "diagnosis_in_progress"
        assert fields(refused)[1][0] == ("diagnoses", {"r": 49, "t": DAY})
    assert openai.untouched


def test_legacy_answers_carry_the_fields_too(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    response = client.get("/Diagnose", params={"q": "Rough idle"}, headers=auth_headers(user))
    assert response.status_code == 200
    assert set(response.json()) == {"answer", "session_id"}  # the old contract, unchanged
    assert fields(response)[1][0][1]["r"] == 49
