"""What every test runs against: the test settings, changed for a block when a test needs
other ones; the real app, indexed once and served by the local host; databases taken to a
revision through Alembic and compared with the models."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    import azure.functions as func
    from sqlalchemy import Connection

    from devhost.host import FunctionHost

TEST_JWT_SECRET = "test-secret-" + "k" * 40
TEST_ENVIRONMENT = {
    "AXLY_ENV": "test",
    "JWT_SECRET": TEST_JWT_SECRET,
    "CORS_ALLOWED_ORIGINS": "https://app.axly.pro,http://localhost:19006",
    "BCRYPT_ROUNDS": "10",  # the lowest cost the settings allow: keeps the suite fast
    # The Azure Monitor exporter's own calls home (its usage statistics and remote
    # configuration): never from tests, which reach only local stand-ins.
    "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
    "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
    "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
}


def reload_settings(**env: str) -> None:
    """Set `env` and make the app read its settings again (with a fresh engine)."""
    from api import db
    from api.settings import get_settings

    os.environ.update(env)
    get_settings.cache_clear()
    db.dispose_engine()


@contextmanager
def changed_settings(**env: str) -> Iterator[None]:
    """Settings changed for a block, e.g. `with changed_settings(DIAGNOSES_PER_DAY="1"):`;
    the previous ones (with a fresh engine and schema check) are back afterwards. A DB_URI
    given without DB_POOLER is a direct connection (the run's pooler settings are dropped)."""
    if "DB_URI" in env and "DB_POOLER" not in env:
        env = {"DB_POOLER": "none", "DB_MIGRATION_URI": "", **env}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        reload_settings()
        try:
            yield
        finally:
            patch.undo()
            reload_settings()


@cache
def index_function_app() -> list[func.Function]:
    """`function_app.app.get_functions()`, called once per run as the worker does (a second
    call on the same app raises)."""
    from function_app import app

    return app.get_functions()


@cache
def local_host() -> FunctionHost:
    """The local Functions host (WSGI) serving the real app, built once per run."""
    from devhost.host import create_app

    # The host only indexes the app: hand it the run's one index.
    indexed = SimpleNamespace(get_functions=index_function_app)
    return create_app(cast("func.FunctionApp", indexed))


def migrate(connection: Connection, revision: str, *, down: bool = False) -> None:
    """Upgrade (or, `down`, downgrade) the database to `revision` through Alembic."""
    from alembic import command

    from api import migrations

    step = command.downgrade if down else command.upgrade
    step(migrations.alembic_config(connection), revision)
    connection.commit()


def schema_differences(connection: Connection) -> list[Any]:
    """What Alembic's autogenerate finds between the database and the models ([]: none)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from api.models import Base

    try:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))
    finally:
        connection.rollback()  # leave no transaction open for the next Alembic command


def held_bcrypt_checks(
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[threading.Semaphore, threading.Event]:
    """Make every bcrypt check wait, once it is computing (inside its slot), until the
    returned event is set; the semaphore is released once per check that got that far."""
    import bcrypt

    inside, release = threading.Semaphore(0), threading.Event()
    check = bcrypt.checkpw

    def held(password: bytes, hashed: bytes) -> bool:
        inside.release()
        release.wait(timeout=30)
        return check(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", held)
    return inside, release


def terminate_app_connections(own_database: str) -> None:
    """What a database restart or failover does to the app's pooled connections."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from api.settings import get_settings

    direct = get_settings().db_migration_uri or own_database
    engine = create_engine(direct, poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    engine.dispose()
