"""One engine per process (created lazily) and one session per invocation."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, make_url
from sqlalchemy.orm import Session, sessionmaker

from api import migrations
from api.errors import AppError, ServiceUnavailableError
from api.settings import get_settings

log = logging.getLogger(__name__)

# After a failed schema check, wait this long before trying the database again, so a
# database that comes back is picked up without a restart and a dead one is not hammered.
SCHEMA_RETRY_S = 5.0

# expire_on_commit=False: handlers serialise objects after the wrapper has committed.
# create_savepoint: when tests bind a connection that already holds a transaction, each
# request's commit releases a savepoint and the test rolls everything back at the end.
SessionFactory = sessionmaker(expire_on_commit=False, join_transaction_mode="create_savepoint")

_engine_lock = threading.Lock()
_engine: Engine | None = None


def database_url(uri: str) -> str:
    """Accept plain `postgresql://` URIs (as Azure and psql print them) and use psycopg 3."""
    url = make_url(uri)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def get_engine() -> Engine:
    """The process-wide engine; a small pool with pre-ping, since instances come and go."""
    global _engine
    with _engine_lock:
        if _engine is None:
            settings = get_settings()
            if not settings.db_uri:
                raise ServiceUnavailableError(
                    "The database is not configured (DB_URI)", code="database_unavailable"
                )
            _engine = create_engine(
                database_url(settings.db_uri),
                pool_pre_ping=True,
                pool_size=settings.db_pool_size,
                max_overflow=settings.db_pool_size,
                pool_recycle=1800,
                hide_parameters=True,  # errors in the logs must not carry users' data
                connect_args={"connect_timeout": 5, "application_name": "axly-api"},
            )
        return _engine


def dispose_engine() -> None:
    """Close the pool (tests and the local host call this when settings change)."""
    global _engine
    with _engine_lock:
        if _engine is not None:
            _engine.dispose()
        _engine = None
    _schema.reset()


@dataclass
class SchemaStatus:
    """What the start-up schema check found; `error` is safe to show to clients."""

    revision: str | None = None
    error: str | None = None
    checked_at: float = 0.0
    upgraded: bool = False  # this process applied migrations

    @property
    def ready(self) -> bool:
        return self.error is None and self.revision == migrations.SCHEMA_HEAD


class _SchemaGate:
    """Runs the start-up schema check once per process (again after a failure)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.status = SchemaStatus()

    def reset(self) -> None:
        with self._lock:
            self.status = SchemaStatus()

    def ensure(self) -> SchemaStatus:
        with self._lock:
            status = self.status
            retry_due = time.monotonic() - status.checked_at >= SCHEMA_RETRY_S
            if not status.ready and (status.checked_at == 0.0 or retry_due):
                self.status = status = _check_schema()
            return status


def _check_schema() -> SchemaStatus:
    checked_at = time.monotonic()
    upgraded = False
    try:
        engine = get_engine()
        with engine.connect() as connection:
            revision = migrations.current_revision(connection)
            if revision != migrations.SCHEMA_HEAD and get_settings().db_migrate_on_startup:
                upgraded = migrations.upgrade_to_head(connection)
                revision = migrations.current_revision(connection)
    except ServiceUnavailableError as exc:
        return SchemaStatus(error=exc.detail, checked_at=checked_at)
    except Exception:
        log.exception("Database schema check failed")
        return SchemaStatus(
            error="The database is unreachable or could not be migrated", checked_at=checked_at
        )
    if revision != migrations.SCHEMA_HEAD:
        return SchemaStatus(
            revision=revision,
            error=(
                f"The database schema is at {revision}, expected {migrations.SCHEMA_HEAD}"
                if revision
                else "The database has not been migrated"
            ),
            checked_at=checked_at,
        )
    return SchemaStatus(revision=revision, checked_at=checked_at, upgraded=upgraded)


_schema = _SchemaGate()


def schema_status() -> SchemaStatus:
    """The start-up schema check's result, running it on first use."""
    return _schema.ensure()


def get_bind() -> Engine | Connection:
    """What sessions run on: the engine once the schema is at head (tests bind a connection)."""
    status = schema_status()
    if not status.ready:
        raise ServiceUnavailableError(
            f"The database is not available: {status.error}", code="database_unavailable"
        )
    return get_engine()


@contextmanager
def session_scope() -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception (except a domain
    error that asks to keep what was written: see `AppError.keep_changes`)."""
    session = SessionFactory(bind=get_bind())
    try:
        yield session
        session.commit()
    except AppError as error:
        if error.keep_changes:
            session.commit()
        else:
            session.rollback()
        raise
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
