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
SCHEMA_HEAD = "08_rate_limit_events"

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


def upgrade_to_head(connection: Connection) -> bool:
    """Bring the database to SCHEMA_HEAD; returns True when this call applied migrations.

    Many instances may start at once: each takes a session-level advisory lock, re-reads the
    revision, and only the first one to hold the lock runs Alembic; the rest wait and find
    the database already at head.
    """
    connection.rollback()  # wait for the lock holding no other locks (e.g. on alembic_version)
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()
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
