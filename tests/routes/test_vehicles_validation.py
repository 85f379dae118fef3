"""Garage input rules: each bad field is a 422 naming that field, and nothing is stored or
changed; the edges of each rule are accepted. The clock is fixed at 2030-06-15 08:00 UTC,
so next year is 2031 and tomorrow is 2030-06-16."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy.orm import Session

from api.models import User
from tests.factories import auth_headers, create_user

NOW = datetime(2030, 6, 15, 8, 0, tzinfo=UTC)
VALID_VEHICLE = {"make": "Mazda", "model": "MX-5", "year": 1990}
VALID_MOD = {"name": "Coilovers"}
SOME_ID = str(uuid.uuid4())
SOME_TIME = "2020-01-01T00:00:00Z"

BAD_VEHICLE_FIELDS = [
    ("make", ""),
    ("make", "   "),
    ("make", "M" * 65),
    ("make", "Maz\x00da"),
    ("model", ""),
    ("model", "M" * 65),
    ("model", 5),
    ("year", 1885),
    ("year", 2032),  # next year + 1
    ("year", "2032"),
    ("year", "19x9"),
    ("year", "19999"),
    ("year", 19999),
    ("year", "199"),
    ("year", 1990.5),
    ("year", True),
    ("year", None),
    ("submodel", "S" * 65),
    ("vin", "JM1NA3512L010000"),  # 16 characters
    ("vin", "JM1NA3512L01000011"),  # 18
    ("vin", "JM1NA3512I0100001"),
    ("vin", "JM1NA3512O0100001"),
    ("vin", "JM1NA3512Q0100001"),
    ("vin", "JM1NA3512L01000-1"),
    ("nickname", "N" * 65),
    ("nickname", "line\nbreak"),
    ("id", SOME_ID),
    ("user_id", SOME_ID),
    ("created_at", SOME_TIME),
    ("updated_at", SOME_TIME),
    ("mods", []),
    ("colour", "red"),
]
BAD_MOD_FIELDS = [
    ("name", ""),
    ("name", "  "),
    ("name", "N" * 201),
    ("description", "D" * 5001),
    ("description", "bell\x07"),
    ("installed_on", "2030-06-16"),  # tomorrow, even at UTC+14
    ("installed_on", "not a date"),
    ("installed_on", "2024-02-30"),
    ("installed_on", 1_700_000_000),
    ("id", SOME_ID),
    ("vehicle_id", SOME_ID),
    ("created_at", SOME_TIME),
    ("updated_at", SOME_TIME),
    ("price", 10),
]


@pytest.fixture
def user(session: Session, time_machine) -> User:
    time_machine.move_to(NOW, tick=False)
    return create_user(session)


@pytest.fixture
def headers(user: User) -> dict[str, str]:
    return auth_headers(user)


@pytest.fixture
def vehicle(client: httpx.Client, headers: dict[str, str]) -> dict:
    return client.post("/vehicles", json=VALID_VEHICLE, headers=headers).json()


@pytest.fixture
def mod(client: httpx.Client, headers: dict[str, str], vehicle: dict) -> dict:
    url = f"/vehicles/{vehicle['id']}/mods"
    return client.post(url, json=VALID_MOD, headers=headers).json()


def assert_rejects(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_failed"
    assert [error["field"] for error in body["errors"]] == [f"body.{field}"]
    assert f"body.{field}" in body["detail"]


@pytest.mark.parametrize(("field", "value"), BAD_VEHICLE_FIELDS)
def test_bad_vehicle_field_on_create(
    client: httpx.Client, headers: dict[str, str], field: str, value: object
) -> None:
    assert_rejects(
        client.post("/vehicles", json=VALID_VEHICLE | {field: value}, headers=headers), field
    )
    assert client.get("/vehicles", headers=headers).json()["total"] == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [*BAD_VEHICLE_FIELDS, ("make", None), ("model", None)],
)
def test_bad_vehicle_field_on_update(
    client: httpx.Client, headers: dict[str, str], vehicle: dict, field: str, value: object
) -> None:
    url = f"/vehicles/{vehicle['id']}"
    assert_rejects(client.patch(url, json={field: value}, headers=headers), field)
    assert_rejects(client.put(url, json=VALID_VEHICLE | {field: value}, headers=headers), field)
    assert client.get(url, headers=headers).json() == vehicle | {"mods": []}


@pytest.mark.parametrize("field", ["make", "model", "year"])
def test_put_needs_every_required_field(
    client: httpx.Client, headers: dict[str, str], vehicle: dict, field: str
) -> None:
    body = {name: value for name, value in VALID_VEHICLE.items() if name != field}
    assert_rejects(client.put(f"/vehicles/{vehicle['id']}", json=body, headers=headers), field)


@pytest.mark.parametrize(("field", "value"), BAD_MOD_FIELDS)
def test_bad_mod_field_on_create(
    client: httpx.Client, headers: dict[str, str], vehicle: dict, field: str, value: object
) -> None:
    url = f"/vehicles/{vehicle['id']}/mods"
    assert_rejects(client.post(url, json=VALID_MOD | {field: value}, headers=headers), field)
    assert client.get(url, headers=headers).json()["total"] == 0


@pytest.mark.parametrize(("field", "value"), [*BAD_MOD_FIELDS, ("name", None)])
def test_bad_mod_field_on_update(
    client: httpx.Client,
    headers: dict[str, str],
    vehicle: dict,
    mod: dict,
    field: str,
    value: object,
) -> None:
    url = f"/vehicles/{vehicle['id']}/mods/{mod['id']}"
    assert_rejects(client.patch(url, json={field: value}, headers=headers), field)
    assert_rejects(client.put(url, json=VALID_MOD | {field: value}, headers=headers), field)
    assert client.get(url, headers=headers).json() == mod


@pytest.mark.parametrize(
    ("year", "stored"), [(1886, "1886"), (2031, "2031"), ("2004", "2004"), (" 1990 ", "1990")]
)
def test_year_edges_are_accepted_and_stored_as_text(
    client: httpx.Client, headers: dict[str, str], year: object, stored: str
) -> None:
    response = client.post("/vehicles", json=VALID_VEHICLE | {"year": year}, headers=headers)
    assert response.status_code == 201
    assert response.json()["year"] == stored


def test_next_year_moves_with_the_calendar(
    client: httpx.Client, user: User, headers: dict[str, str], time_machine
) -> None:
    body = VALID_VEHICLE | {"year": 2032}
    assert_rejects(client.post("/vehicles", json=body, headers=headers), "year")
    time_machine.move_to(datetime(2031, 1, 1, 0, 0, tzinfo=UTC), tick=False)
    response = client.post("/vehicles", json=body, headers=auth_headers(user))
    assert response.status_code == 201


def test_longest_values_are_accepted(
    client: httpx.Client, headers: dict[str, str], vehicle: dict
) -> None:
    longest = {"make": "M" * 64, "model": "M" * 64, "submodel": "S" * 64, "nickname": "N" * 64}
    response = client.post("/vehicles", json=VALID_VEHICLE | longest, headers=headers)
    assert response.status_code == 201
    mod = {"name": "N" * 200, "description": "D\n" * 2500, "installed_on": "2030-06-15"}
    created = client.post(f"/vehicles/{vehicle['id']}/mods", json=mod, headers=headers)
    assert created.status_code == 201
    assert created.json()["description"] == ("D\n" * 2500).strip()


def test_installed_on_allows_today_anywhere_on_earth(
    client: httpx.Client, user: User, vehicle: dict, time_machine
) -> None:
    """At 20:00 UTC it is already the next day at UTC+14; the day after that is refused."""
    time_machine.move_to(datetime(2030, 6, 15, 20, 0, tzinfo=UTC), tick=False)
    headers = auth_headers(user)
    url = f"/vehicles/{vehicle['id']}/mods"
    today_at_utc14 = {"name": "Seats", "installed_on": "2030-06-16"}
    assert client.post(url, json=today_at_utc14, headers=headers).status_code == 201
    day_after = {"name": "Seats", "installed_on": "2030-06-17"}
    assert_rejects(client.post(url, json=day_after, headers=headers), "installed_on")
