"""Who may touch what in the garage (another user's ids are simply not found, and nothing
changes), and how many SQL statements a list or detail costs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy import Connection, event, func, select
from sqlalchemy.orm import Session

from api.models import User, Vehicle, VehicleMod
from tests.factories import auth_headers, create_user

MX5 = {"make": "Mazda", "model": "MX-5", "year": 1990, "vin": "JM1NA3512L0100001"}

Route = tuple[str, str, dict[str, object] | None]  # method, path, body

VEHICLE_ROUTES: list[Route] = [
    ("GET", "/vehicles/{vehicle}", None),
    ("PATCH", "/vehicles/{vehicle}", {"nickname": "Mine now"}),
    ("PUT", "/vehicles/{vehicle}", {"make": "Mine", "model": "Now", "year": 2000}),
    ("DELETE", "/vehicles/{vehicle}", None),
    ("GET", "/vehicles/{vehicle}/mods", None),
    ("POST", "/vehicles/{vehicle}/mods", {"name": "Tracker"}),
]
MOD_ROUTES: list[Route] = [
    ("GET", "/vehicles/{vehicle}/mods/{mod}", None),
    ("PATCH", "/vehicles/{vehicle}/mods/{mod}", {"name": "Stolen"}),
    ("PUT", "/vehicles/{vehicle}/mods/{mod}", {"name": "Stolen"}),
    ("DELETE", "/vehicles/{vehicle}/mods/{mod}", None),
]


@dataclass
class Garage:
    headers: dict[str, str]
    vehicle: str
    mod: str
    other_vehicle: str
    other_mod: str


def add_vehicle_with_mod(client: httpx.Client, headers: dict[str, str], **fields) -> tuple:
    vehicle = client.post("/vehicles", json=MX5 | fields, headers=headers).json()["id"]
    mod = client.post(
        f"/vehicles/{vehicle}/mods", json={"name": "Coilovers"}, headers=headers
    ).json()["id"]
    return vehicle, mod


@pytest.fixture
def owner(client: httpx.Client, session: Session) -> Garage:
    headers = auth_headers(create_user(session))
    vehicle, mod = add_vehicle_with_mod(client, headers)
    other_vehicle, other_mod = add_vehicle_with_mod(client, headers, vin=None)
    return Garage(headers, vehicle, mod, other_vehicle, other_mod)


def everything_of(client: httpx.Client, garage: Garage) -> dict:
    """The owner's whole garage as the API shows it."""
    listing = client.get("/vehicles", headers=garage.headers).json()
    return {
        "list": listing,
        "details": [
            client.get(f"/vehicles/{v['id']}", headers=garage.headers).json()
            for v in listing["items"]
        ],
    }


def call(client: httpx.Client, method: str, path: str, body, headers) -> httpx.Response:
    return client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(("method", "path", "body"), VEHICLE_ROUTES + MOD_ROUTES)
def test_another_user_gets_404_and_changes_nothing(
    client: httpx.Client, session: Session, owner: Garage, method: str, path: str, body
) -> None:
    intruder = auth_headers(create_user(session))
    before = everything_of(client, owner)
    mods_before = session.scalar(select(func.count()).select_from(VehicleMod))

    response = call(
        client, method, path.format(vehicle=owner.vehicle, mod=owner.mod), body, intruder
    )

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    missing = path.format(vehicle=uuid.uuid4(), mod=uuid.uuid4())
    assert call(client, method, missing, body, intruder).json() == response.json()
    assert everything_of(client, owner) == before
    assert session.scalar(select(func.count()).select_from(VehicleMod)) == mods_before
    assert client.get("/vehicles", headers=intruder).json() == {"items": [], "total": 0}


@pytest.mark.parametrize(("method", "path", "body"), MOD_ROUTES)
def test_a_mod_under_another_vehicle_of_the_same_user_is_404(
    client: httpx.Client, owner: Garage, method: str, path: str, body
) -> None:
    before = everything_of(client, owner)

    response = call(
        client, method, path.format(vehicle=owner.other_vehicle, mod=owner.mod), body, owner.headers
    )

    assert response.status_code == 404
    assert everything_of(client, owner) == before


@pytest.mark.parametrize(("method", "path", "body"), VEHICLE_ROUTES + MOD_ROUTES)
def test_malformed_ids_are_404(
    client: httpx.Client, owner: Garage, method: str, path: str, body
) -> None:
    malformed = [path.format(vehicle="not-a-uuid", mod=owner.mod)]
    if "{mod}" in path:
        malformed.append(path.format(vehicle=owner.vehicle, mod="1234"))
    for url in malformed:
        assert call(client, method, url, body, owner.headers).status_code == 404, url


def test_every_route_needs_a_token(client: httpx.Client, owner: Garage) -> None:
    routes = [("GET", "/vehicles", None), ("POST", "/vehicles", MX5), *VEHICLE_ROUTES, *MOD_ROUTES]
    for method, path, body in routes:
        response = call(client, method, path.format(vehicle=owner.vehicle, mod=owner.mod), body, {})
        assert response.status_code == 401, (method, path)


@contextmanager
def counting_statements(connection: Connection) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append(statement)

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", record)


def statements_to_get(
    client: httpx.Client, connection: Connection, path: str, headers: dict[str, str]
) -> int:
    with counting_statements(connection) as statements:
        response = client.get(path, headers=headers, params={"limit": 100})
    assert response.status_code == 200
    return len(statements)


def add_vehicles(session: Session, user: User, count: int, *, mods_each: int) -> list[Vehicle]:
    vehicles = [
        Vehicle(
            user_id=user.id,
            make="Mazda",
            model="MX-5",
            year="1990",
            mods=[VehicleMod(name=f"Mod {n}") for n in range(mods_each)],
        )
        for _ in range(count)
    ]
    session.add_all(vehicles)
    session.flush()
    return vehicles


def test_listing_1_or_50_vehicles_takes_the_same_statements(
    client: httpx.Client, session: Session, connection: Connection
) -> None:
    user = create_user(session)
    headers = auth_headers(user)
    add_vehicles(session, user, 1, mods_each=3)
    for_one = statements_to_get(client, connection, "/vehicles", headers)

    add_vehicles(session, user, 49, mods_each=3)
    for_fifty = statements_to_get(client, connection, "/vehicles", headers)

    assert for_fifty == for_one
    assert (
        len(client.get("/vehicles", headers=headers, params={"limit": 100}).json()["items"]) == 50
    )


def test_vehicle_detail_and_mod_list_take_the_same_statements_for_1_or_50_mods(
    client: httpx.Client, session: Session, connection: Connection
) -> None:
    user = create_user(session)
    headers = auth_headers(user)
    (few,) = add_vehicles(session, user, 1, mods_each=1)
    (many,) = add_vehicles(session, user, 1, mods_each=50)

    for path in ("/vehicles/{id}", "/vehicles/{id}/mods"):
        for_one = statements_to_get(client, connection, path.format(id=few.id), headers)
        for_fifty = statements_to_get(client, connection, path.format(id=many.id), headers)
        assert for_fifty == for_one, path
    detail = client.get(f"/vehicles/{many.id}", headers=headers).json()
    assert len(detail["mods"]) == 50
