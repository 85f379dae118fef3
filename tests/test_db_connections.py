"""Connections (api/db.py), directly and through PgBouncer: the server-side timeouts hold in
every transaction (set when a direct connection opens; through PgBouncer in each
transaction, ending with it: nothing leaks to the pooler's other clients); a
statement past its timeout and a database that stops answering altogether are 503 — never
a hang — and the API recovers when the database does; pooled connections prepare nothing
on the server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from api import db
from api.settings import Settings, get_settings
from devhost.database import Server
from tests.factories import auth_headers, create_user
from tests.harness import TEST_JWT_SECRET
from tests.pgbouncer import running_pgbouncer
from tests.tcp_proxy import freezable_proxy

NO_HANG_S = 60  # a request that has not answered by then is hanging


def plain_engine(uri: str) -> Engine:
    """A client of the same database without the app's per-transaction settings."""
    return create_engine(uri, poolclass=NullPool, connect_args={"prepare_threshold": None})


def user_headers() -> dict[str, str]:
    """A user committed to the database the app uses now, and its Bearer header."""
    with Session(db.get_engine()) as session:
        headers = auth_headers(create_user(session))
        session.commit()
    return headers


def answered_in_time(call: Callable[[], httpx.Response]) -> httpx.Response:
    """`call()`'s response; fails the test if it has not come by NO_HANG_S."""
    responses: list[httpx.Response] = []
    worker = threading.Thread(target=lambda: responses.append(call()), daemon=True)
    worker.start()
    worker.join(NO_HANG_S)
    assert responses, f"no answer after {NO_HANG_S} s: the request hangs"
    return responses[0]


def test_timeouts_are_set_in_each_transaction_and_end_with_it(
    own_database: str, override_settings: Callable[..., None]
) -> None:
    override_settings(DB_STATEMENT_TIMEOUT_S="1.5", DB_IDLE_IN_TRANSACTION_TIMEOUT_S="20")
    show = text(
        "SELECT current_setting('statement_timeout'),"
        " current_setting('idle_in_transaction_session_timeout')"
    )
    with db.get_engine().connect() as connection:
        assert tuple(connection.execute(show).one()) == ("1500ms", "20s")
        connection.commit()
        assert tuple(connection.execute(show).one()) == ("1500ms", "20s")  # the next one too
    other = plain_engine(own_database)  # the same pooler, if any: its server connections
    with other.connect() as connection:
        assert tuple(connection.execute(show).one()) == ("0", "0")
    other.dispose()


def test_options_in_a_direct_db_uri_are_kept_beside_the_timeouts(
    make_database: Callable[..., str],
    migrated_template: str,
    override_settings: Callable[..., None],
) -> None:
    uri = make_database(template=migrated_template)
    options = "options=-c%20lock_timeout%3D1234"
    override_settings(
        DB_URI=f"{uri}{'&' if '?' in uri else '?'}{options}",
        DB_POOLER="none",
        DB_MIGRATION_URI="",
        DB_STATEMENT_TIMEOUT_S="1.5",
    )
    show = text("SELECT current_setting('lock_timeout'), current_setting('statement_timeout')")
    with db.get_engine().connect() as connection:
        assert tuple(connection.execute(show).one()) == ("1234ms", "1500ms")


def test_a_statement_past_its_timeout_is_503(
    own_database: str, override_settings: Callable[..., None], new_client
) -> None:
    override_settings(DB_STATEMENT_TIMEOUT_S="1")
    headers = user_headers()
    blocker = plain_engine(own_database)
    with blocker.connect() as holding, new_client() as client:
        holding.execute(text("LOCK TABLE vehicles IN ACCESS EXCLUSIVE MODE"))
        blocked = answered_in_time(lambda: client.get("/vehicles", headers=headers))
        holding.rollback()
        after = client.get("/vehicles", headers=headers)
    blocker.dispose()
    assert blocked.status_code == 503
    assert blocked.json()["code"] == "database_unavailable"
    assert after.status_code == 200


@pytest.mark.slow
@pytest.mark.parametrize("through", ["direct", "pgbouncer"])
def test_a_frozen_database_is_503_within_the_timeouts_and_then_recovers(
    through: str,
    pg_server: Server,
    make_database: Callable[..., str],
    migrated_template: str,
    override_settings: Callable[..., None],
    new_client,
) -> None:
    direct = make_database(template=migrated_template)
    with freezable_proxy(pg_server) as proxy:
        proxied = proxy.uri(direct)
        with (
            running_pgbouncer(proxy.server) if through == "pgbouncer" else nullcontext()
        ) as bouncer:
            env = bouncer.settings(proxied) if bouncer else {"DB_URI": proxied}
            override_settings(
                **env,
                DB_STATEMENT_TIMEOUT_S="1",
                DB_CONNECT_TIMEOUT_S="2",
                DB_POOL_TIMEOUT_S="1",
            )
            headers = user_headers()
            with new_client() as client:
                assert client.get("/me", headers=headers).status_code == 200
                proxy.frozen.set()
                frozen = answered_in_time(lambda: client.get("/me", headers=headers))
                proxy.frozen.clear()
                recovered = client.get("/me", headers=headers)
    assert frozen.status_code == 503
    assert frozen.json()["code"] == "database_unavailable"
    assert recovered.status_code == 200


@pytest.mark.parametrize(("pooler", "prepared"), [("none", True), ("pgbouncer", False)])
def test_statements_are_prepared_on_the_server_only_without_a_pooler(
    database_uri: str, pooler: str, prepared: bool
) -> None:
    """Through a transaction pooler the next transaction may run on a server connection
    that never saw a statement prepared on another: DB_POOLER=pgbouncer prepares none."""
    direct = get_settings().db_migration_uri  # straight to the server: one session to look into
    env: dict[str, Any] = {
        "JWT_SECRET": TEST_JWT_SECRET,
        "DB_URI": direct,
        "DB_POOLER": pooler,
        "DB_MIGRATION_URI": direct,
    }
    settings = Settings(**env)
    engine = db.create_app_engine(settings)
    with engine.connect() as connection:
        for _ in range(8):  # psycopg prepares a statement from its 5th use
            connection.execute(text("SELECT count(*) FROM users")).scalar()
        count = connection.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
    engine.dispose()
    assert bool(count) is prepared
