"""The start-up schema check (api.db.schema_status): it migrates an empty or outdated
database (directly, or through DB_MIGRATION_URI when requests go through PgBouncer), refuses
to serve when migrations are off, survives a dead database, stays off Alembic when nothing
is to do, and lets many instances start at once on one database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from api import db, migrations
from api.errors import ServiceUnavailableError
from tests.harness import TEST_JWT_SECRET, migrate

ROOT = Path(__file__).resolve().parent.parent

# What a fresh API process does on its first request.
STARTUP_SCRIPT = """
import json, sys
from api import db
status = db.schema_status()
print(json.dumps({
    "ready": status.ready,
    "upgraded": status.upgraded,
    "revision": status.revision,
    "error": status.error,
    "alembic_imported": "alembic" in sys.modules,
}))
"""


def revision_in(uri: str) -> str | None:
    engine = create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return migrations.current_revision(conn)
    finally:
        engine.dispose()


def table_names(uri: str) -> set[str]:
    engine = create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def migrate_database(uri: str, revision: str = "head") -> None:
    engine = create_engine(uri, poolclass=NullPool)
    with engine.connect() as conn:
        migrate(conn, revision)
    engine.dispose()


def process_env(uri: str) -> dict[str, str]:
    return {
        **os.environ,
        "DB_URI": uri,
        "DB_POOLER": "none",
        "DB_MIGRATION_URI": "",
        "JWT_SECRET": TEST_JWT_SECRET,
        "AXLY_ENV": "test",
        "DB_MIGRATE_ON_STARTUP": "true",
        "PYTHONPATH": str(ROOT),
    }


def start_api_process(uri: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", STARTUP_SCRIPT],
        cwd=ROOT,
        env=process_env(uri),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def report_of(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("through", ["direct", "pgbouncer"])
def test_empty_database_is_migrated_to_head_on_first_check(
    through, make_database, pgbouncer, override_settings
):
    """Through PgBouncer, requests use the pooler and Alembic the direct DB_MIGRATION_URI
    (its session-level lock would not survive transaction pooling)."""
    uri = make_database()
    override_settings(**(pgbouncer.settings(uri) if through == "pgbouncer" else {"DB_URI": uri}))

    status = db.schema_status()

    assert status.ready, status.error
    assert status.upgraded
    assert status.revision == migrations.SCHEMA_HEAD
    assert revision_in(uri) == migrations.SCHEMA_HEAD
    assert {"users", "vehicles", "conversations", "chat_messages"} <= table_names(uri)
    assert db.get_bind() is db.get_engine()


def test_outdated_database_is_brought_to_head_keeping_its_rows(make_database, override_settings):
    uri = make_database()
    migrate_database(uri, "03_conv_vehicle_fk")
    engine = create_engine(uri, poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO users (email, password_hash) VALUES ('old@x.io', 'h')"))
    override_settings(DB_URI=uri)

    status = db.schema_status()

    assert status.ready, status.error
    assert status.upgraded
    with engine.connect() as conn:
        emails = conn.execute(text("SELECT email FROM users")).scalars().all()
    engine.dispose()
    assert emails == ["old@x.io"]


def test_with_migrations_off_an_empty_database_is_left_alone_and_not_served(
    make_database, override_settings
):
    uri = make_database()
    override_settings(DB_URI=uri, DB_MIGRATE_ON_STARTUP="false")

    status = db.schema_status()

    assert not status.ready
    assert not status.upgraded
    assert status.error == "The database has not been migrated"
    assert table_names(uri) == set()
    with pytest.raises(ServiceUnavailableError) as raised:
        db.get_bind()
    assert raised.value.status == 503
    assert raised.value.code == "database_unavailable"
    assert "has not been migrated" in raised.value.detail


def test_unreachable_database_gives_an_error_status_instead_of_raising(override_settings):
    override_settings(DB_URI="postgresql+psycopg://postgres@127.0.0.1:1/x")

    status = db.schema_status()

    assert not status.ready
    assert status.error == "The database is unreachable or could not be migrated"
    with pytest.raises(ServiceUnavailableError, match="unreachable"):
        db.get_bind()


def test_a_database_at_head_is_checked_without_importing_alembic(make_database):
    uri = make_database()
    migrate_database(uri)

    report = report_of(start_api_process(uri))

    assert report["ready"], report["error"]
    assert not report["upgraded"]
    assert report["alembic_imported"] is False


def _connections(conn, application_name: str) -> int:
    """The database's connections from the app (`axly-api`) or its migrations."""
    conn.commit()
    return conn.execute(
        text(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = :name"
        ),
        {"name": application_name},
    ).scalar_one()


def _waiting_for_migration_lock(conn) -> int:
    return conn.execute(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND objid::bigint = :key"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ),
        {"key": migrations.MIGRATION_LOCK_KEY},
    ).scalar_one()


@pytest.mark.slow
def test_instances_starting_together_migrate_once_holding_one_direct_connection(make_database):
    """Four API processes start on one empty database while the test holds the migration
    lock, as an instance that is migrating would. None of them opens a migration connection
    meanwhile, let alone queues on the lock (they watch the revision through their own
    pools); once the lock is free, exactly one of them migrates and every one of them comes
    up ready."""
    uri = make_database()
    engine = create_engine(uri, poolclass=NullPool)
    with engine.connect() as lock_holder:
        lock_holder.execute(
            text("SELECT pg_advisory_lock(:key)"), {"key": migrations.MIGRATION_LOCK_KEY}
        )
        lock_holder.commit()
        processes = [start_api_process(uri) for _ in range(4)]
        try:
            deadline = time.monotonic() + 30
            while _connections(lock_holder, "axly-api") < 4:  # each has read the revision
                exited = [p for p in processes if p.poll() is not None]
                assert not exited, exited[0].communicate()
                assert time.monotonic() < deadline, "the processes never started"
                time.sleep(0.02)
            watching_until = time.monotonic() + 2 * db.MIGRATION_POLL_S
            while time.monotonic() < watching_until:
                assert _waiting_for_migration_lock(lock_holder) == 0
                assert _connections(lock_holder, "axly-api-migrations") == 0
                assert all(p.poll() is None for p in processes)  # still waiting
                time.sleep(0.05)
            lock_holder.execute(
                text("SELECT pg_advisory_unlock(:key)"), {"key": migrations.MIGRATION_LOCK_KEY}
            )
            lock_holder.commit()
            reports = [report_of(p) for p in processes]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.kill()
                    process.communicate()

    assert all(r["ready"] for r in reports), reports
    assert sum(r["upgraded"] for r in reports) == 1, reports
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    assert versions == [migrations.SCHEMA_HEAD]


def test_an_instance_waiting_for_another_migration_gives_up_with_a_clear_status(
    make_database, override_settings, new_client, monkeypatch
):
    """Another instance holds the migration lock and never finishes: this one stops
    waiting after MIGRATION_WAIT_S, health names the wait, and once the lock is free the
    next check migrates."""
    uri = make_database()
    override_settings(DB_URI=uri, DB_POOLER="none", DB_MIGRATION_URI="")
    monkeypatch.setattr(db, "MIGRATION_WAIT_S", 0.3)
    monkeypatch.setattr(db, "MIGRATION_POLL_S", 0.05)
    monkeypatch.setattr(db, "SCHEMA_RETRY_S", 0.0)
    engine = create_engine(uri, poolclass=NullPool)
    with engine.connect() as lock_holder, new_client() as client:
        lock_holder.execute(
            text("SELECT pg_advisory_lock(:key)"), {"key": migrations.MIGRATION_LOCK_KEY}
        )
        lock_holder.commit()
        answers: list[httpx.Response] = []
        checking = threading.Thread(target=lambda: answers.append(client.get("/health")))
        checking.start()
        checking.join(timeout=15)  # a regression would wait forever: fail instead of hanging
        assert answers, "the instance is still waiting for the other one's migration"
        assert answers[0].status_code == 503
        assert answers[0].json()["detail"] == (
            "Another instance is migrating the schema; stopped waiting after 0.3 s"
            " (checked again on the next request)"
        )
        lock_holder.execute(
            text("SELECT pg_advisory_unlock(:key)"), {"key": migrations.MIGRATION_LOCK_KEY}
        )
        lock_holder.commit()
        assert client.get("/health").json()["schema"] == migrations.SCHEMA_HEAD
    engine.dispose()
