"""Schema migrations at start-up: a cheap revision check, Alembic only when it is needed."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.exc import ProgrammingError

if TYPE_CHECKING:
    from alembic.config import Config

# The newest revision in api/alembic/versions (a test keeps the two in step). Comparing
# against a constant lets an up-to-date instance skip importing Alembic on a cold start.
SCHEMA_HEAD = "10_client_features"

# Arbitrary fixed key: every instance of the API serialises its upgrades on it.
MIGRATION_LOCK_KEY = 0x41584C59  # "AXLY"

ALEMBIC_DIR = Path(__file__).parent / "alembic"

log = logging.getLogger(__name__)


def current_revision(connection: Connection) -> str | None:
    """The database's Alembic revision, or None for a database never migrated."""
    try:
        with connection.begin_nested():
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except ProgrammingError:  # no alembic_version table yet
        return None


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for our script directory, optionally bound to an open connection."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(ALEMBIC_DIR))
    config.attributes["connection"] = connection
    return config


def migration_running(connection: Connection) -> bool:
    """Whether another session holds the migration lock (read from pg_locks, so any
    connection can ask, a pooled one included)."""
    return bool(
        connection.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND classid = 0 AND objid = :key AND database ="
                " (SELECT oid FROM pg_database WHERE datname = current_database()))"
            ),
            {"key": MIGRATION_LOCK_KEY},
        ).scalar()
    )


def upgrade_to_head(connection: Connection) -> bool | None:
    """Bring the database to SCHEMA_HEAD under a session-level advisory lock: True when this
    call applied migrations, False when it found the database at head, None when another
    process holds the lock (it is migrating).

    Many instances may start at once. The lock is only tried, never waited for: an instance
    that finds it taken hands its connection back, and waits for the migrating one through
    its own pool (api/db.py), so instances starting together do not each hold a direct
    connection for as long as the migration lasts.
    """
    connection.rollback()  # take the lock holding no other locks (e.g. on alembic_version)
    locked = connection.execute(
        text("SELECT pg_try_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
    ).scalar()
    connection.commit()
    if not locked:
        return None
    try:
        revision = current_revision(connection)
        connection.commit()
        if revision == SCHEMA_HEAD:
            return False
        from alembic import command

        log.info("Migrating database schema from %s to %s", revision, SCHEMA_HEAD)
        command.upgrade(alembic_config(connection), "head")
        connection.commit()
        return True
    finally:
        connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()
