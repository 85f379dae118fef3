"""Read-only requests (api/db.py): what each read route sends to PostgreSQL, recorded at the
protocol level (devhost/wire.py: BEGIN, COMMIT and pings included), directly and through
PgBouncer; a list reads its page and total in one statement; a connection the server closed
costs a read nothing (it is served again) and a write a 503, never a 500."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from sqlalchemy.orm import Session

from api import db
from api.models import User, Vehicle, VehicleMod
from api.settings import get_settings
from tests.factories import add_conversation, add_image, add_message, auth_headers, create_user
from tests.harness import terminate_app_connections

# Statements that read data, besides authenticating the caller (one statement: the user
# and whether the token's session is alive).
READS = {
    "/me": 0,
    "/dtc/P0301": 0,
    "/vehicles": 1,  # the page and its total
    "/vehicles/{vehicle}": 2,  # the vehicle, then its mods
    "/vehicles/{vehicle}/mods": 2,  # the vehicle (404 when not the caller's), the page
    "/vehicles/{vehicle}/mods/{mod}": 1,
    "/conversations": 1,
    "/conversations/{conversation}": 2,  # the conversation, then its messages
    "/conversations/{conversation}/attachments/{attachment}": 1,
    "/me/usage": 1,
}


@dataclass(frozen=True)
class Garage:
    headers: dict[str, str]
    ids: dict[str, str]


@pytest.fixture
def garage(committed: Session) -> Garage:
    """A user with 3 vehicles of 2 mods and a conversation with an image, committed."""
    user = create_user(committed)
    vehicles = [Vehicle(user_id=user.id, make="Mazda", model="3", year="2019") for _ in range(3)]
    committed.add_all(vehicles)
    committed.flush()
    mods = [VehicleMod(vehicle_id=v.id, name=f"Mod {n}") for v in vehicles for n in range(2)]
    committed.add_all(mods)
    conversation = add_conversation(committed, user.id, title="Misfire")
    message = add_message(committed, conversation, "user", {"text": "It shakes"}, 5)
    attachment = add_image(committed, message)
    headers = auth_headers(user)
    committed.commit()
    ids = {
        "vehicle": str(vehicles[0].id),
        "mod": str(mods[0].id),
        "conversation": str(conversation.id),
        "attachment": str(attachment.id),
    }
    return Garage(headers, ids)


@pytest.mark.parametrize("route", list(READS))
def test_each_read_route_sends_its_statements_and_nothing_else(
    own_database: str, new_client: Callable[[], httpx.Client], garage: Garage, route: str
) -> None:
    from devhost.wire import recording

    path = route.format(**garage.ids)
    direct = get_settings().db_pooler == "none"
    with new_client() as client, recording(db.get_engine()) as recorder:
        assert client.get(path, headers=garage.headers).status_code == 200  # connections traced
        recorder.take()
        assert client.get(path, headers=garage.headers).status_code == 200
        wire = recorder.take()
    statements = 1 + READS[route]
    if direct:  # autocommit: the statements alone (the timeouts came with the connection)
        assert (wire.statements, wire.round_trips) == (statements, statements), wire.sql
    else:  # a transaction for the transaction-local timeouts: BEGIN, set_config, ..., COMMIT
        assert wire.statements == statements + 1, wire.sql
        assert wire.round_trips == statements + 3, wire.sql
        assert wire.sql[0] == "BEGIN"
        assert wire.sql[-1] == "COMMIT"
    assert ";" not in wire.sql  # no pre-ping


def test_a_page_past_the_end_still_has_the_total(
    own_database: str, new_client: Callable[[], httpx.Client], garage: Garage
) -> None:
    with new_client() as client:
        past = client.get("/vehicles?offset=10", headers=garage.headers)
        empty_page = client.get("/vehicles?limit=2&offset=2", headers=garage.headers)
    assert past.json() == {"items": [], "total": 3}
    assert len(empty_page.json()["items"]) == 1
    assert empty_page.json()["total"] == 3


def test_a_read_on_a_connection_the_server_closed_is_served_again(
    own_database: str, new_client: Callable[[], httpx.Client], garage: Garage
) -> None:
    with new_client() as client:
        assert client.get("/vehicles", headers=garage.headers).status_code == 200
        terminate_app_connections(own_database)
        again = client.get("/vehicles", headers=garage.headers)
    assert again.status_code == 200
    assert again.json()["total"] == 3


def test_a_write_on_a_connection_the_server_closed_is_served_on_a_fresh_one(
    own_database: str, new_client: Callable[[], httpx.Client], garage: Garage
) -> None:
    """Its first statement (the caller, locked) fails before anything is written, so the
    whole unit of work runs again: the client sees its 201, and the vehicle is stored once."""
    vehicle = {"make": "Honda", "model": "Civic", "year": "2020"}
    with new_client() as client:
        assert client.get("/vehicles", headers=garage.headers).status_code == 200
        terminate_app_connections(own_database)
        first = client.post("/vehicles", json=vehicle, headers=garage.headers)
        second = client.post("/vehicles", json=vehicle, headers=garage.headers)
        listed = client.get("/vehicles", headers=garage.headers).json()
    assert (first.status_code, second.status_code) == (201, 201), first.text
    assert listed["total"] == 5


def test_an_unauthenticated_write_on_a_closed_connection_is_503_and_the_next_succeeds(
    own_database: str, new_client: Callable[[], httpx.Client], garage: Garage
) -> None:
    """A write without a caller to read first is not run again: the client retries."""
    with new_client() as client:
        assert client.get("/vehicles", headers=garage.headers).status_code == 200
        terminate_app_connections(own_database)
        first = client.post("/request_pin", json={"email": "first-driver@example.com"})
        again = client.post("/request_pin", json={"email": "next-driver@example.com"})
    if get_settings().db_pooler == "none":
        assert first.status_code == 503
        assert first.json()["code"] == "database_unavailable"
    else:  # PgBouncer drops the closed server connection and hands out another
        assert first.status_code == 202
    assert again.status_code == 202


def test_a_read_only_unit_of_work_that_writes_is_refused(own_database: str) -> None:
    def write_while_reading() -> None:
        with db.session_scope(read_only=True) as session:
            session.add(User(email="nobody@example.com", password_hash="!"))
            session.flush()

    with pytest.raises(RuntimeError, match="read-only"):
        write_while_reading()


def test_a_read_that_finds_the_pool_busy_past_its_timeout_is_503(
    own_database: str,
    new_client: Callable[[], httpx.Client],
    garage: Garage,
    override_settings: Callable[..., None],
) -> None:
    override_settings(DB_POOL_SIZE="1", DB_MAX_OVERFLOW="0", DB_POOL_TIMEOUT_S="0.2")
    with new_client() as client:
        assert client.get("/vehicles", headers=garage.headers).status_code == 200
        held = db.get_engine().raw_connection()  # the pool's only connection
        try:
            busy = client.get("/vehicles", headers=garage.headers)
        finally:
            held.close()
        after = client.get("/vehicles", headers=garage.headers)
    assert busy.status_code == 503
    assert busy.json()["code"] == "database_unavailable"
    assert after.status_code == 200


def test_a_read_statement_is_compiled_once_as_the_engine_would_send_it(
    own_database: str,
) -> None:
    from sqlalchemy import bindparam, select

    statement = select(Vehicle.id, Vehicle.make).where(Vehicle.user_id == bindparam("owner"))
    read = db.Read.of(statement)
    assert read.sql == str(statement.compile(db.get_engine()))
    assert read.columns == ("id", "make")
    assert read.defaults == {}
    mazdas = db.Read.of(statement.where(Vehicle.make == "Mazda"))  # a literal of its own
    assert list(mazdas.defaults.values()) == ["Mazda"]
    with db.read_scope() as reader:
        assert reader.rows(mazdas, {"owner": uuid.uuid4()}) == []


def test_a_statement_whose_values_need_sqlalchemy_is_not_read_raw() -> None:
    from sqlalchemy import Numeric, PickleType, column, select, table

    for type_ in (PickleType(), Numeric(asdecimal=False)):
        with pytest.raises(TypeError, match="type processing"):
            db.Read.of(select(column("value", type_)).select_from(table("values")))
