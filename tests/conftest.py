"""Test fixtures: a real PostgreSQL (TEST_DB_URI, else the embedded server), migrated once
per run through Alembic and reached through a real PgBouncer in transaction mode, as on
Azure; each test runs inside a transaction that is rolled back. Tests that need real
commits and real concurrency (threads racing, a provider call watched from outside) get a
database of their own instead, directly or through the pooler."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import azure.functions as func
import httpx
import pytest
from pytest_httpserver import HTTPServer
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Connection, create_engine, make_url
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from api.functions import ROUTE_PREFIX
from api.models import User
from devhost.database import Server, embedded_server
from tests.factories import create_user
from tests.fake_openai import FakeOpenAI
from tests.harness import (
    TEST_ENVIRONMENT,
    changed_settings,
    index_function_app,
    local_host,
    reload_settings,
)
from tests.outbox import Outbox
from tests.pgbouncer import PgBouncer, running_pgbouncer

if TYPE_CHECKING:
    from tests.exported import Exported

# Set before anything reads settings (they are cached after the first read).
os.environ.update(TEST_ENVIRONMENT)


@pytest.fixture(scope="session")
def pg_server() -> Server:
    """The PostgreSQL server every test database lives on."""
    uri = os.environ.get("TEST_DB_URI")
    return Server.from_uri(uri) if uri else embedded_server()


def _databases(server: Server) -> Iterator[Callable[..., str]]:
    """A factory of empty databases (unique names, so parallel runs never collide), each
    dropped, its connections ended first, when the fixture using this ends."""
    janitors: list[DatabaseJanitor] = []

    def create(template: str | None = None) -> str:
        name = f"axly_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        janitor = DatabaseJanitor(
            user=server.user,
            host=server.host,
            port=server.port,
            password=server.password,
            dbname=name,
            template_dbname=template,
            maintenance_dbname=server.maintenance_db,
            connection_timeout=20,
        )
        janitor.init()
        janitors.append(janitor)
        return server.uri(name)

    yield create
    for janitor in reversed(janitors):
        janitor.drop()


@pytest.fixture
def make_database(pg_server: Server) -> Iterator[Callable[..., str]]:
    """Create empty databases for one test; they are dropped when it ends, so a run keeps
    only a handful on the shared server at any time, not one per test until its end."""
    yield from _databases(pg_server)


@pytest.fixture(scope="session")
def make_run_database(pg_server: Server) -> Iterator[Callable[..., str]]:
    """Create empty databases for a session- or module-scoped fixture: kept for the run."""
    yield from _databases(pg_server)


@pytest.fixture
def override_settings() -> Iterator[Callable[..., None]]:
    """Switch settings for the rest of one test, e.g. `override_settings(DB_URI="...")`;
    the previous ones (with a fresh engine and schema check) are back afterwards."""
    with ExitStack() as changes:
        yield lambda **env: changes.enter_context(changed_settings(**env))


@pytest.fixture(scope="session")
def pgbouncer(pg_server: Server) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the tests' server, for the whole run."""
    with running_pgbouncer(pg_server) as bouncer:
        yield bouncer


def _migrated(uri: str) -> None:
    from api import migrations

    engine = create_engine(uri, poolclass=NullPool)
    with engine.connect() as connection:
        migrations.upgrade_to_head(connection)
    engine.dispose()


@pytest.fixture(scope="session")
def database_uri(make_run_database: Callable[..., str], pgbouncer: PgBouncer) -> Iterator[str]:
    """The run's database, migrated to head once through Alembic, as the app does it; the
    app reaches it through PgBouncer (DB_POOLER=pgbouncer, migrations on the direct URI).
    Yields the app's DB_URI."""
    from api import db

    direct = make_run_database()
    _migrated(direct)
    pooled = pgbouncer.settings(direct)
    reload_settings(**pooled)
    yield pooled["DB_URI"]
    db.dispose_engine()


@pytest.fixture(scope="session")
def migrated_template(make_run_database: Callable[..., str]) -> str:
    """A migrated database nobody stays connected to, copied by `own_database`."""
    uri = make_run_database()
    _migrated(uri)
    return make_url(uri).database or ""


@pytest.fixture(params=["direct", "pgbouncer"])
def own_database(
    request: pytest.FixtureRequest,
    make_database: Callable[..., str],
    migrated_template: str,
    pgbouncer: PgBouncer,
    override_settings: Callable[..., None],
) -> str:
    """A migrated database of the test's own that the app uses for real (no shared
    transaction: every request commits), directly and then through PgBouncer. Returns the
    app's DB_URI."""
    direct = make_database(template=migrated_template)
    env = (
        pgbouncer.settings(direct)
        if request.param == "pgbouncer"
        else {"DB_URI": direct, "DB_POOLER": "none", "DB_MIGRATION_URI": ""}
    )
    override_settings(**env)
    return env["DB_URI"]


@pytest.fixture
def committed(own_database: str) -> Iterator[Session]:
    """A session on the test's own database; what it flushes, `commit()` makes visible."""
    from api import db

    with Session(db.get_engine(), expire_on_commit=False) as db_session:
        yield db_session


@pytest.fixture
def connection(database_uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connection]:
    """A connection in an open transaction that every request of the test shares (each
    request commits a savepoint); rolled back at the end, so tests never see each other."""
    from api import db

    engine = db.get_engine()
    with engine.connect() as conn:
        transaction = conn.begin()
        monkeypatch.setattr(db, "get_bind", lambda: conn)
        yield conn
        transaction.rollback()


@pytest.fixture
def session(connection: Connection) -> Iterator[Session]:
    """A session on the test's transaction, for arranging and checking rows directly."""
    with Session(bind=connection, join_transaction_mode="create_savepoint") as db_session:
        yield db_session


@pytest.fixture
def user(session: Session) -> User:
    """A user of the test's own, to call the API as (`auth_headers(user)`)."""
    return create_user(session)


@pytest.fixture(scope="session")
def indexed_functions() -> list[func.Function]:
    return index_function_app()


def _local_client() -> httpx.Client:
    transport = httpx.WSGITransport(app=local_host())
    return httpx.Client(transport=transport, base_url=f"http://testserver/{ROUTE_PREFIX}")


@pytest.fixture
def client(connection: Connection) -> Iterator[httpx.Client]:
    """The API as a client sees it: through the local Functions host, in-process."""
    with _local_client() as http_client:
        yield http_client


@pytest.fixture
def new_client() -> Callable[[], httpx.Client]:
    """Clients of the API on `own_database` (one per thread: a client is not thread-safe)."""
    return _local_client


@contextmanager
def _provider_at(server: HTTPServer) -> Iterator[FakeOpenAI]:
    with changed_settings(
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=server.url_for("/v1"),
        OPENAI_MAX_RETRIES="0",
        OPENAI_TIMEOUT_S="5",
    ):
        yield FakeOpenAI(server)


@pytest.fixture
def provider(httpserver: HTTPServer) -> Iterator[FakeOpenAI]:
    """The AI provider: a local OpenAI-compatible server the real SDK is pointed at."""
    with _provider_at(httpserver) as fake:
        yield fake


@pytest.fixture
def busy_provider() -> Iterator[FakeOpenAI]:
    """The AI provider answering many calls at once (a thread per request), for turns that
    really run in parallel."""
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    try:
        with _provider_at(server) as fake:
            yield fake
    finally:
        server.clear()
        server.stop()


@pytest.fixture
def openai(client: httpx.Client, provider: FakeOpenAI) -> FakeOpenAI:
    """The AI provider, for tests on the shared test transaction (through `client`)."""
    return provider


@pytest.fixture
def outbox(caplog: pytest.LogCaptureFixture) -> Outbox:
    """The e-mails the console backend sends during the test."""
    return Outbox(caplog)


@pytest.fixture
def start_exporting(database_uri: str) -> Iterator[Callable[[], Exported]]:
    """Start telemetry into in-memory exporters (after any settings the test changes); the
    database engine is made afresh under it (so its connections are traced), and again
    afterwards, untraced. Ask for this before `client`."""
    from api import telemetry
    from api.db import dispose_engine
    from tests.exported import Exported, in_memory

    def start() -> Exported:
        telemetry.stop()
        exporters = in_memory()
        pipeline = telemetry.start(exporters)
        assert pipeline is not None
        dispose_engine()
        return Exported(pipeline, exporters)

    yield start
    telemetry.stop()
    dispose_engine()


@pytest.fixture
def exported(start_exporting: Callable[[], Exported]) -> Exported:
    """Telemetry on, into in-memory exporters: what would be sent to Application Insights."""
    return start_exporting()
