"""The garage through the local host: vehicle and mod CRUD, VIN rules, caps, and deleting a
vehicle that conversations mention."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import ChatMessage, Conversation, Vehicle, VehicleMod
from tests.factories import auth_headers, create_user

MX5 = {"make": "Mazda", "model": "MX-5", "year": 1990}
VIN = "JM1NA3512L0100001"
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_vehicle_crud(client: httpx.Client, session: Session, time_machine) -> None:
    time_machine.move_to(START, tick=False)
    headers = auth_headers(create_user(session))

    created = client.post(
        "/vehicles",
        json={"make": "  Mazda ", "model": "MX-5", "year": "1990", "vin": VIN.lower()},
        headers=headers,
    )
    assert created.status_code == 201
    vehicle = created.json()
    assert created.headers["Location"] == f"/api/vehicles/{vehicle['id']}"
    assert vehicle == {
        "id": vehicle["id"],
        "make": "Mazda",
        "model": "MX-5",
        "year": "1990",
        "submodel": None,
        "vin": VIN,
        "nickname": None,
        "created_at": iso(START),
        "updated_at": iso(START),
    }
    url = f"/vehicles/{vehicle['id']}"
    assert client.get("/vehicles", headers=headers).json() == {"items": [vehicle], "total": 1}
    assert client.get(url, headers=headers).json() == vehicle | {"mods": []}

    time_machine.move_to(START + timedelta(minutes=1), tick=False)
    patched = client.patch(url, json={"nickname": "Red", "year": 1991}, headers=headers)
    assert patched.status_code == 200
    assert patched.json() == vehicle | {
        "nickname": "Red",
        "year": "1991",
        "updated_at": iso(START + timedelta(minutes=1)),
    }

    replaced = client.put(
        url,
        json={"make": "Mazda", "model": "Miata", "year": 1991, "submodel": "NA"},
        headers=headers,
    )
    assert replaced.status_code == 200
    assert replaced.json() == patched.json() | {
        "model": "Miata",
        "submodel": "NA",
        "vin": None,  # PUT replaces: what is left out is cleared
        "nickname": None,
    }
    assert client.get(url, headers=headers).json() == replaced.json() | {"mods": []}

    deleted = client.delete(url, headers=headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert client.get(url, headers=headers).status_code == 404
    assert client.get("/vehicles", headers=headers).json() == {"items": [], "total": 0}


def test_patch_null_clears_optional_fields_and_empty_patch_changes_nothing(
    client: httpx.Client, session: Session
) -> None:
    headers = auth_headers(create_user(session))
    vehicle = client.post(
        "/vehicles", json=MX5 | {"vin": VIN, "nickname": "Red", "submodel": "NA"}, headers=headers
    ).json()
    url = f"/vehicles/{vehicle['id']}"

    assert client.patch(url, json={}, headers=headers).json() == vehicle
    cleared = client.patch(
        url, json={"vin": None, "nickname": None, "submodel": "  "}, headers=headers
    ).json()
    assert (cleared["vin"], cleared["nickname"], cleared["submodel"]) == (None, None, None)
    assert cleared["make"] == "Mazda"


def test_mod_crud(client: httpx.Client, session: Session, time_machine) -> None:
    time_machine.move_to(START, tick=False)
    headers = auth_headers(create_user(session))
    vehicle = client.post("/vehicles", json=MX5, headers=headers).json()
    mods_url = f"/vehicles/{vehicle['id']}/mods"

    created = client.post(
        mods_url,
        json={"name": " Coilovers ", "description": "Street\nsetup", "installed_on": "2025-05-01"},
        headers=headers,
    )
    assert created.status_code == 201
    mod = created.json()
    assert created.headers["Location"] == f"/api/vehicles/{vehicle['id']}/mods/{mod['id']}"
    assert mod == {
        "id": mod["id"],
        "vehicle_id": vehicle["id"],
        "name": "Coilovers",
        "description": "Street\nsetup",
        "installed_on": "2025-05-01",
        "created_at": iso(START),
        "updated_at": iso(START),
    }
    url = f"{mods_url}/{mod['id']}"
    assert client.get(url, headers=headers).json() == mod
    assert client.get(mods_url, headers=headers).json() == {"items": [mod], "total": 1}

    time_machine.move_to(START + timedelta(minutes=1), tick=False)
    patched = client.patch(url, json={"description": None}, headers=headers)
    assert patched.status_code == 200
    assert patched.json() == mod | {
        "description": None,
        "updated_at": iso(START + timedelta(minutes=1)),
    }

    replaced = client.put(url, json={"name": "Turbo kit"}, headers=headers)
    assert replaced.status_code == 200
    assert replaced.json() == patched.json() | {"name": "Turbo kit", "installed_on": None}

    time_machine.move_to(START + timedelta(minutes=2), tick=False)
    newer = client.post(mods_url, json={"name": "Seats"}, headers=headers).json()
    detail = client.get(f"/vehicles/{vehicle['id']}", headers=headers).json()
    assert detail["mods"] == [newer, replaced.json()]  # newest first

    assert client.delete(url, headers=headers).status_code == 204
    assert client.get(url, headers=headers).status_code == 404
    assert client.get(mods_url, headers=headers).json() == {"items": [newer], "total": 1}


def test_deleting_a_vehicle_deletes_its_mods(client: httpx.Client, session: Session) -> None:
    headers = auth_headers(create_user(session))
    vehicle = client.post("/vehicles", json=MX5, headers=headers).json()
    for name in ("Coilovers", "Seats"):
        client.post(f"/vehicles/{vehicle['id']}/mods", json={"name": name}, headers=headers)

    assert client.delete(f"/vehicles/{vehicle['id']}", headers=headers).status_code == 204

    assert session.scalar(select(func.count()).select_from(VehicleMod)) == 0


def test_deleting_a_vehicle_keeps_conversations_about_it(
    client: httpx.Client, session: Session
) -> None:
    user = create_user(session)
    headers = auth_headers(user)
    vehicle = client.post("/vehicles", json=MX5, headers=headers).json()
    conversation = Conversation(
        user_id=user.id, vehicle_id=uuid.UUID(vehicle["id"]), title="Idle hunting"
    )
    conversation.messages = [
        ChatMessage(role="user", content={"text": "It idles rough when cold"}),
        ChatMessage(role="assistant", content={"text": "Check the idle air control valve"}),
    ]
    session.add(conversation)
    session.flush()

    assert client.delete(f"/vehicles/{vehicle['id']}", headers=headers).status_code == 204

    session.expire_all()
    kept = session.get(Conversation, conversation.id)
    assert kept is not None
    assert kept.vehicle_id is None
    assert kept.title == "Idle hunting"
    assert [m.content["text"] for m in kept.messages] == [
        "It idles rough when cold",
        "Check the idle air control valve",
    ]
    assert session.get(Vehicle, uuid.UUID(vehicle["id"])) is None


def test_list_is_newest_first_and_paginated(
    client: httpx.Client, session: Session, time_machine
) -> None:
    time_machine.move_to(START, tick=False)  # before the token is issued
    headers = auth_headers(create_user(session))
    ids = []
    for second, model in enumerate(("NA", "NB", "NC")):
        time_machine.move_to(START + timedelta(seconds=second), tick=False)
        body = MX5 | {"model": model}
        ids.append(client.post("/vehicles", json=body, headers=headers).json()["id"])
    newest_first = ids[::-1]

    first = client.get("/vehicles", params={"limit": 2}, headers=headers).json()
    assert [v["id"] for v in first["items"]] == newest_first[:2]
    assert first["total"] == 3
    rest = client.get("/vehicles", params={"limit": 2, "offset": 2}, headers=headers).json()
    assert [v["id"] for v in rest["items"]] == newest_first[2:]
    assert rest["total"] == 3
    for bad in ({"limit": 0}, {"limit": 101}, {"offset": -1}):
        assert client.get("/vehicles", params=bad, headers=headers).status_code == 422


def test_lists_send_each_item_as_its_own_response_does(
    client: httpx.Client, session: Session, time_machine
) -> None:
    """Lists send their rows as read, without the response model's validation: the bytes of
    an item must still be those of the same vehicle or mod sent on its own (every field
    set, text beyond ASCII and with line breaks, a timestamp with microseconds)."""
    time_machine.move_to(START + timedelta(microseconds=123456), tick=False)
    headers = auth_headers(create_user(session))
    vehicle = client.post(
        "/vehicles",
        json=MX5 | {"submodel": "Miata ñ", "vin": VIN, "nickname": "Rote Zora, 赤 🚗"},
        headers=headers,
    )
    mods = f"/vehicles/{vehicle.json()['id']}/mods"
    mod = client.post(
        mods,
        json={
            "name": "Ölkühler",
            "description": "Line one\n\tline «two» 🔧",
            "installed_on": "2026-02-28",
        },
        headers=headers,
    )
    assert (vehicle.status_code, mod.status_code) == (201, 201)

    def page_of(item: bytes) -> bytes:
        return b'{"items":[' + item + b'],"total":1}'

    assert client.get("/vehicles", headers=headers).content == page_of(vehicle.content)
    assert client.get(mods, headers=headers).content == page_of(mod.content)
    assert client.get(f"{mods}/{mod.json()['id']}", headers=headers).content == mod.content
    empty = client.get("/vehicles", params={"offset": 5}, headers=headers)
    assert empty.content == b'{"items":[],"total":1}'


def test_vin_is_unique_per_user(client: httpx.Client, session: Session) -> None:
    owner, other = create_user(session), create_user(session)
    headers = auth_headers(owner)
    first = client.post("/vehicles", json=MX5 | {"vin": VIN}, headers=headers).json()

    duplicate = client.post("/vehicles", json=MX5 | {"vin": VIN.lower()}, headers=headers)
    assert duplicate.status_code == 409
    assert duplicate.json()["code"] == "vin_taken"
    assert "VIN" in duplicate.json()["detail"]
    assert client.get("/vehicles", headers=headers).json()["total"] == 1

    second = client.post("/vehicles", json=MX5, headers=headers).json()
    url = f"/vehicles/{second['id']}"
    assert client.patch(url, json={"vin": VIN}, headers=headers).status_code == 409
    assert client.put(url, json=MX5 | {"vin": VIN}, headers=headers).status_code == 409
    assert client.get(url, headers=headers).json()["vin"] is None
    assert client.put(
        f"/vehicles/{first['id']}", json=MX5 | {"vin": VIN}, headers=headers
    ).is_success

    elsewhere = client.post("/vehicles", json=MX5 | {"vin": VIN}, headers=auth_headers(other))
    assert elsewhere.status_code == 201


@pytest.fixture
def garage_caps(override_settings: Callable[..., None]) -> Callable[..., None]:
    def set_caps(*, vehicles: int = 50, mods: int = 200) -> None:
        override_settings(MAX_VEHICLES_PER_USER=str(vehicles), MAX_MODS_PER_VEHICLE=str(mods))

    return set_caps


def test_vehicle_cap(client: httpx.Client, session: Session, garage_caps) -> None:
    garage_caps(vehicles=2)
    headers = auth_headers(create_user(session))
    for _ in range(2):
        assert client.post("/vehicles", json=MX5, headers=headers).status_code == 201

    refused = client.post("/vehicles", json=MX5, headers=headers)

    assert refused.status_code == 409
    assert refused.json()["code"] == "vehicle_limit_reached"
    assert "at most 2 vehicles" in refused.json()["detail"]
    assert client.get("/vehicles", headers=headers).json()["total"] == 2
    other_user = auth_headers(create_user(session))
    assert client.post("/vehicles", json=MX5, headers=other_user).status_code == 201


def test_mod_cap(client: httpx.Client, session: Session, garage_caps) -> None:
    garage_caps(mods=1)
    headers = auth_headers(create_user(session))
    vehicle, other_vehicle = (
        client.post("/vehicles", json=MX5, headers=headers).json() for _ in range(2)
    )
    mods_url = f"/vehicles/{vehicle['id']}/mods"
    assert client.post(mods_url, json={"name": "Seats"}, headers=headers).status_code == 201

    refused = client.post(mods_url, json={"name": "Wheels"}, headers=headers)

    assert refused.status_code == 409
    assert refused.json()["code"] == "mod_limit_reached"
    assert "at most 1 mods" in refused.json()["detail"]
    assert client.get(mods_url, headers=headers).json()["total"] == 1
    other_url = f"/vehicles/{other_vehicle['id']}/mods"
    assert client.post(other_url, json={"name": "Wheels"}, headers=headers).status_code == 201
