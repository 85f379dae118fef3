"""Test fixtures: a real PostgreSQL (TEST_DB_URI, else the embedded server), migrated once
per run through Alembic; each test runs inside a transaction that is rolled back."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import TYPE_CHECKING

import azure.functions as func
import httpx
import pytest
from pytest_httpserver import HTTPServer
from pytest_postgresql.janitor import DatabaseJanitor
from sqlalchemy import Connection, create_engine
from sqlalchemy.orm import Session

from api.endpoints import ROUTE_PREFIX
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

if TYPE_CHECKING:
    from tests.exported import Exported

# Set before anything reads settings (they are cached after the first read).
os.environ.update(TEST_ENVIRONMENT)


@pytest.fixture(scope="session")
def pg_server() -> Server:
    """The PostgreSQL server every test database lives on."""
    uri = os.environ.get("TEST_DB_URI")
    return Server.from_uri(uri) if uri else embedded_server()


@pytest.fixture(scope="session")
def make_database(pg_server: Server) -> Iterator[Callable[..., str]]:
    """Create empty databases (unique per run, so parallel runs never collide); all are
    dropped at the end of the run."""
    janitors: list[DatabaseJanitor] = []

    def create(template: str | None = None) -> str:
        name = f"axly_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        janitor = DatabaseJanitor(
            user=pg_server.user,
            host=pg_server.host,
            port=pg_server.port,
            password=pg_server.password,
            dbname=name,
            template_dbname=template,
            maintenance_dbname=pg_server.maintenance_db,
            connection_timeout=20,
        )
        janitor.init()
        janitors.append(janitor)
        return pg_server.uri(name)

    yield create
    for janitor in reversed(janitors):
        janitor.drop()


@pytest.fixture
def override_settings() -> Iterator[Callable[..., None]]:
    """Switch settings for the rest of one test, e.g. `override_settings(DB_URI="...")`;
    the previous ones (with a fresh engine and schema check) are back afterwards."""
    with ExitStack() as changes:
        yield lambda **env: changes.enter_context(changed_settings(**env))


@pytest.fixture(scope="session")
def database_uri(make_database: Callable[..., str]) -> Iterator[str]:
    """The run's database, migrated to head once through Alembic, as the app does it."""
    from api import db, migrations

    uri = make_database()
    engine = create_engine(uri)
    with engine.connect() as connection:
        migrations.upgrade_to_head(connection)
    engine.dispose()
    reload_settings(DB_URI=uri)
    yield uri
    db.dispose_engine()


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


@pytest.fixture
def client(connection: Connection) -> Iterator[httpx.Client]:
    """The API as a client sees it: through the local Functions host, in-process."""
    transport = httpx.WSGITransport(app=local_host())
    base_url = f"http://testserver/{ROUTE_PREFIX}"
    with httpx.Client(transport=transport, base_url=base_url) as http_client:
        yield http_client


@pytest.fixture
def openai(httpserver: HTTPServer, client: httpx.Client) -> Iterator[FakeOpenAI]:
    """The AI provider: a local OpenAI-compatible server the real SDK is pointed at."""
    with changed_settings(
        OPENAI_API_KEY="sk-test",
        OPENAI_BASE_URL=httpserver.url_for("/v1"),
        OPENAI_MAX_RETRIES="0",
        OPENAI_TIMEOUT_S="5",
    ):
        yield FakeOpenAI(httpserver)


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
