"""One engine per process (created lazily), one session per unit of work, and the bounds
that keep a slow or frozen database from holding requests.

Connection budget: an instance opens at most DB_POOL_SIZE + DB_MAX_OVERFLOW connections;
a request that finds none free within DB_POOL_TIMEOUT_S answers 503. Connections older than
DB_POOL_RECYCLE_S are replaced. No pre-ping (a round trip before every request): a
connection the server has closed fails its request's first statement instead, which also
marks every connection pooled before it stale (SQLAlchemy replaces them at checkout); a
read-only request is then served again on a fresh connection, any other answers 503 (see
api/endpoints.py, `_run`). A slow request's units of work (a diagnosis turn's steps, a
login's) are the exception: they cannot be run again — the AI provider was paid, the
password checked — and may find the database restarted while they waited, so each tries
its connection first (`session_scope(checked=True)`), one round trip among seconds.

Read-only requests (GET operations of the one-transaction kind) open no transaction on a
direct connection: autocommit, so no BEGIN and no COMMIT round trip, each statement its own
snapshot (a list reads its page and total in one statement: api/services/listing.py). The
reads declared for it (`read_scope`) go further: no session and no ORM, just a connection
checked out of the same pool, running statements compiled once per process (`Read`) with
psycopg itself; a database failure becomes the error SQLAlchemy raises for it, a closed
connection included (marked stale with the others pooled before it, as SQLAlchemy does), so
both kinds of unit of work are answered the same way (api/endpoints.py).

Timeouts, per connection, all below DIAGNOSE_DEADLINE_S:
- connecting: libpq `connect_timeout` (DB_CONNECT_TIMEOUT_S), and TCP keepalives
  (DB_KEEPALIVES_IDLE_S) so a dead peer of an idle pooled connection is noticed;
- on the server: `statement_timeout` and `idle_in_transaction_session_timeout`. On a direct
  connection (DB_POOLER=none) they are the session's own, given as startup `options` when
  it connects: nothing to send per request, and the session is ours alone. Through a
  transaction pooler (DB_POOLER=pgbouncer) a server connection serves other clients
  between our transactions: startup `options` are not passed on and a session-level SET
  would leak to them, so they are set at the start of every transaction with
  `set_config(..., is_local => true)`, and read-only requests keep their transaction there
  (outside one, a transaction-local setting would last a single statement);
- on the client: no reply may take longer than the statement timeout plus
  RESPONSE_GRACE_S (api/utils/bounded_connection.py), for when the server cannot enforce its own
  timeout — a frozen backend or a network path that swallows packets still ACKs TCP, so
  keepalives alone never notice. The request then answers 503 instead of hanging.

PgBouncer (DB_POOLER=pgbouncer, transaction pooling): no server-side prepared statements
(psycopg `prepare_threshold=None`) and only transaction-scoped state (advisory locks are
`pg_advisory_xact_lock`, settings are transaction-local); migrations, which need a
session-level advisory lock, run on a direct connection (DB_MIGRATION_URI).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import Connection, Engine, Select, create_engine, event, make_url, select
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, NullPool, PoolProxiedConnection

from api import migrations
from api.errors import AppError, ServiceUnavailableError
from api.settings import Settings, get_settings

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.types import TypeEngine

log = logging.getLogger(__name__)

# After a failed schema check, wait this long before trying the database again, so a
# database that comes back is picked up without a restart and a dead one is not hammered.
SCHEMA_RETRY_S = 5.0
# How often an instance waiting for another's migration looks at the revision again, and
# for how long at most: then its schema check fails, naming the wait (health and database
# routes answer 503 instead of holding every request of the instance behind the check),
# and the next check, SCHEMA_RETRY_S later, looks again.
MIGRATION_POLL_S = 1.0
MIGRATION_WAIT_S = 30.0
# The client waits this much longer than the server's statement timeout, so the server's
# own (clean) cancellation wins whenever the server is able to run it.
RESPONSE_GRACE_S = 2.0
KEEPALIVE_INTERVAL_S = 10  # between unanswered keepalive probes
KEEPALIVE_PROBES = 3  # unanswered probes before the connection counts as dead

# expire_on_commit=False: handlers serialise objects after the wrapper has committed.
# create_savepoint: when tests bind a connection that already holds a transaction, each
# request's commit releases a savepoint and the test rolls everything back at the end.
SessionFactory = sessionmaker(expire_on_commit=False, join_transaction_mode="create_savepoint")

# What a service that runs several short transactions is given instead of one session:
# `with unit_of_work() as session:` commits on success and rolls back on an exception.
UnitOfWork = Callable[[], AbstractContextManager[Session]]

_engine_lock = threading.Lock()
_engine: Engine | None = None
_autocommit_engine: Engine | None = None  # the same pool, without transactions (reads)


def database_url(uri: str) -> str:
    """Accept plain `postgresql://` URIs (as Azure and psql print them) and use psycopg 3."""
    url = make_url(uri)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


def connect_args(settings: Settings, *, application_name: str, prepare: bool) -> dict[str, Any]:
    """libpq/psycopg options: bounded connecting, TCP keepalives, and server-side prepared
    statements only when `prepare` (a direct connection: through a transaction pooler the
    next transaction may run on a server connection that never saw the statement)."""
    args: dict[str, Any] = {
        "application_name": application_name,
        "connect_timeout": settings.db_connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": settings.db_keepalives_idle_s,
        "keepalives_interval": KEEPALIVE_INTERVAL_S,
        "keepalives_count": KEEPALIVE_PROBES,
    }
    if not prepare:
        args["prepare_threshold"] = None
    return args


def _timeouts(settings: Settings) -> dict[str, str]:
    """The server-side timeouts, in milliseconds (as PostgreSQL's settings take them)."""
    return {
        "statement": str(round(settings.db_statement_timeout_s * 1000)),
        "idle": str(round(settings.db_idle_in_transaction_timeout_s * 1000)),
    }


def create_app_engine(settings: Settings) -> Engine:
    """The pooled engine requests use, with the connection budget and timeouts above."""
    direct = settings.db_pooler == "none"
    timeouts = _timeouts(settings)
    args = connect_args(settings, application_name="axly-api", prepare=direct)
    if direct:
        # Replaces the `options` of DB_URI's query, so those are appended: last wins, so an
        # operator's own timeouts there still override these defaults.
        own = make_url(settings.db_uri).query.get("options", ())
        args["options"] = " ".join(
            [
                f"-c statement_timeout={timeouts['statement']}",
                f"-c idle_in_transaction_session_timeout={timeouts['idle']}",
                *([own] if isinstance(own, str) else own),
            ]
        )
    engine = create_engine(
        database_url(settings.db_uri),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_recycle=settings.db_pool_recycle_s,
        hide_parameters=True,  # errors in the logs must not carry users' data
        connect_args=args,
    )
    response_timeout_s = settings.db_statement_timeout_s + RESPONSE_GRACE_S
    event.listen(engine, "do_connect", partial(_connect_bounded, response_timeout_s))
    if not direct:
        event.listen(engine, "begin", partial(_set_transaction_timeouts, timeouts))
    return engine


def _connect_bounded(
    response_timeout_s: float,
    dialect: Dialect,
    _record: ConnectionPoolEntry,
    cargs: tuple[str, ...],
    cparams: dict[str, Any],
) -> DBAPIConnection:
    """Connect as the dialect does, then bound every wait of the new connection."""
    from api.utils.bounded_connection import bound_waits  # psycopg: at the first connection

    connection = dialect.connect(*cargs, **cparams)
    bound_waits(connection, response_timeout_s)
    return connection


_TRANSACTION_TIMEOUTS = (
    "SELECT set_config('statement_timeout', %(statement)s, true),"
    " set_config('idle_in_transaction_session_timeout', %(idle)s, true)"
)


def _set_transaction_timeouts(timeouts: dict[str, str], connection: Connection) -> None:
    """The first statement of every transaction (SQLAlchemy does not autobegin inside its
    own `begin` event, so this runs in the transaction being begun)."""
    connection.exec_driver_sql(_TRANSACTION_TIMEOUTS, timeouts)


def migration_engine(settings: Settings) -> Engine:
    """A one-connection engine for Alembic on DB_MIGRATION_URI (else DB_URI): direct, so
    its session-level advisory lock holds, and without the request timeouts, which a long
    migration may rightly pass. It prepares nothing: a migration run is short, and
    `make migrate` may go through the pooler when DB_MIGRATION_URI is unset."""
    return create_engine(
        database_url(settings.migration_uri),
        poolclass=NullPool,
        hide_parameters=True,
        connect_args=connect_args(settings, application_name="axly-api-migrations", prepare=False),
    )


def get_engine() -> Engine:
    """The process-wide engine (see the module's doc)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            settings = get_settings()
            if not settings.db_uri:
                raise ServiceUnavailableError(
                    "The database is not configured (DB_URI)", code="database_unavailable"
                )
            _engine = create_app_engine(settings)
        return _engine


def dispose_engine() -> None:
    """Close the pool (tests and the local host call this when settings change)."""
    global _engine, _autocommit_engine
    with _engine_lock:
        if _engine is not None:
            _engine.dispose()
        _engine = _autocommit_engine = None
    _schema.reset()


def _read_only_engine(engine: Engine) -> Engine:
    """What read-only units of work run on: `engine` in autocommit on a direct connection;
    through a transaction pooler, `engine` itself (see the module's doc: the timeouts are
    transaction-local there)."""
    global _autocommit_engine
    if get_settings().db_pooler != "none":
        return engine
    with _engine_lock:
        if _autocommit_engine is None or _autocommit_engine.pool is not engine.pool:
            _autocommit_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        return _autocommit_engine


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
        revision = _served_revision()
        settings = get_settings()
        if revision != migrations.SCHEMA_HEAD and settings.db_migrate_on_startup:
            upgraded = _migrate(settings)
            revision = _served_revision()  # what requests see, wherever migrations ran
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


def _migrate(settings: Settings) -> bool:
    """Migrate to head, or wait for the instance that is migrating, holding a direct
    connection only to migrate: while the lock is held elsewhere (seen in pg_locks through
    the app's pool) the revision is watched through the pool; should the migrating instance
    die, its lock goes with its connection and the next look here takes over. True when
    this process migrated; ServiceUnavailableError after MIGRATION_WAIT_S of waiting."""
    give_up_at = time.monotonic() + MIGRATION_WAIT_S
    while True:
        if not _migration_running_elsewhere():
            engine = migration_engine(settings)
            try:
                with engine.connect() as connection:
                    upgraded = migrations.upgrade_to_head(connection)
            finally:
                engine.dispose()
            if upgraded is not None:
                return upgraded
        if time.monotonic() >= give_up_at:
            raise ServiceUnavailableError(
                f"Another instance is migrating the schema; stopped waiting after"
                f" {MIGRATION_WAIT_S:g} s (checked again on the next request)",
                code="database_unavailable",
            )
        time.sleep(MIGRATION_POLL_S)
        if _served_revision() == migrations.SCHEMA_HEAD:
            return False


def _migration_running_elsewhere() -> bool:
    with get_engine().connect() as connection:
        return migrations.migration_running(connection)


def _served_revision() -> str | None:
    with get_engine().connect() as connection:
        return migrations.current_revision(connection)


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


@event.listens_for(SessionFactory, "before_flush")
def _refuse_writes_when_read_only(session: Session, *_: object) -> None:
    if session.info.get("read_only"):
        raise RuntimeError("A read-only unit of work tried to write (declare it otherwise)")


def _new_session(read_only: bool) -> Session:
    bind = get_bind()
    if read_only and isinstance(bind, Engine):
        bind = _read_only_engine(bind)
    return SessionFactory(bind=bind, info={"read_only": read_only})


def _live_session(read_only: bool) -> Session:
    """A session whose connection answered a first statement (it opens the transaction
    the unit of work goes on with); one the server had closed is replaced, its failure
    having marked every connection pooled before it stale."""
    from sqlalchemy.exc import DBAPIError

    session = _new_session(read_only)
    try:
        session.execute(select(1))
    except DBAPIError as error:
        session.close()
        if not error.connection_invalidated:
            raise
        log.info("A pooled connection was closed by the server; taking a fresh one")
        session = _new_session(read_only)
    return session


@dataclass(frozen=True)
class Read:
    """A SELECT compiled once per process to what psycopg runs — its SQL text and the values
    of its own literals — with the names of the columns it reads, in order. Only for
    statements whose values and columns need no SQLAlchemy type processing (psycopg
    converts them alike: uuid, text, numbers, timestamps, JSON): `of` refuses any other, so
    a row read raw is the row SQLAlchemy would have read."""

    sql: str
    defaults: dict[str, Any]
    columns: tuple[str, ...]

    @classmethod
    def of(cls, statement: Select[*tuple[Any, ...]]) -> Read:
        from sqlalchemy.exc import InvalidRequestError

        dialect = make_url(database_url("postgresql://")).get_dialect()()  # the engine's

        def processed(type_: TypeEngine[Any], *, result: bool) -> bool:
            impl = type_.dialect_impl(dialect)
            try:
                processor = (
                    impl.result_processor(dialect, None) if result else impl.bind_processor(dialect)
                )
            except (TypeError, InvalidRequestError):  # one chosen by the type the driver reports
                return True
            return processor is not None

        compiled = statement.compile(dialect=dialect)
        processed_names = [
            bind.key for bind in compiled.binds.values() if processed(bind.type, result=False)
        ] + [
            column.key
            for column in statement.selected_columns
            if processed(column.type, result=True)
        ]
        if processed_names:
            raise TypeError(
                f"{processed_names} need SQLAlchemy's type processing: read them in a session"
            )
        defaults = {  # the statement's own literals (a value a `bindparam` names is given)
            key: value for key, value in compiled.params.items() if not compiled.binds[key].required
        }
        return cls(compiled.string, defaults, tuple(statement.selected_columns.keys()))


class Reader:
    """Runs `Read`s on the connection of one read-only unit of work (`read_scope`)."""

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._cursor = connection.cursor()  # one for every statement

    def rows(self, read: Read, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        """The rows `read` returns given `values` for its `bindparam`s, as tuples."""
        params = {**read.defaults, **values} if read.defaults else values
        return self._cursor.execute(read.sql, params).fetchall()


def _psycopg(pooled: PoolProxiedConnection) -> psycopg.Connection[Any]:
    """A pooled connection's psycopg connection (`database_url` always picks psycopg)."""
    return cast("psycopg.Connection[Any]", pooled.driver_connection)


@contextmanager
def read_scope() -> Iterator[Reader]:
    """A read-only unit of work without a session: a connection from the engine's pool in
    autocommit (through a transaction pooler, in a transaction that starts with the
    timeouts: see the module's doc), back to the pool when the block ends. A psycopg error
    is raised as SQLAlchemy's (`DBAPIError`: OperationalError for a lost connection); one
    that closed the connection marks it and every connection pooled before it stale,
    as a session's would (`connection_invalidated`)."""
    from sqlalchemy.exc import DBAPIError

    bind = get_bind()
    dbapi_error = bind.dialect.loaded_dbapi.Error
    pooled: PoolProxiedConnection | None = None
    try:
        if isinstance(bind, Connection):  # tests: inside the test's own transaction
            yield Reader(_psycopg(bind.connection))
            return
        pooled = bind.raw_connection()
        connection = _psycopg(pooled)
        settings = get_settings()
        in_transaction = settings.db_pooler != "none"
        if in_transaction:
            connection.execute(_TRANSACTION_TIMEOUTS, _timeouts(settings))
        else:
            connection.autocommit = True
        try:
            yield Reader(connection)
            if in_transaction:
                connection.commit()
        finally:
            if not (in_transaction or connection.closed):
                connection.autocommit = False  # as sessions expect it
    except dbapi_error as error:
        lost = pooled is not None and bind.dialect.is_disconnect(
            error, pooled.driver_connection, None
        )
        if lost and pooled is not None and isinstance(bind, Engine):
            # What SQLAlchemy's Connection does on a disconnect (engine/base.py,
            # `_handle_dbapi_exception`): this connection is closed and every one pooled
            # before it is replaced at its next checkout.
            bind.pool._invalidate(pooled, error)
        raise DBAPIError.instance(
            None,
            None,
            error,
            dbapi_error,
            hide_parameters=True,
            dialect=bind.dialect,
            connection_invalidated=lost,
        ) from None
    finally:
        if pooled is not None and pooled.is_valid:
            pooled.close()  # back to the pool, which rolls back what a failure left open


@contextmanager
def session_scope(*, read_only: bool = False, checked: bool = False) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception (except a domain
    error that asks to keep what was written: see `AppError.keep_changes`). `read_only`:
    one that never writes, served without a transaction where that is safe (see the
    module's doc); a flush in it is a bug, refused. `checked`: its connection is tried
    first and replaced when the server had closed it, for a unit of work that cannot be
    run again (see the module's doc)."""
    session = _live_session(read_only) if checked else _new_session(read_only)
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
