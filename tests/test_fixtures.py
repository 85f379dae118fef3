"""The test databases on the shared server: a test's own are dropped when it ends, not
kept until the end of the run (a run makes hundreds; a killed run would leave them all)."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from sqlalchemy.engine import make_url

from deploy.app_role import libpq_uri
from devhost.database import Server

CREATED: list[str] = []


def test_a_test_gets_databases_of_its_own(make_database: Callable[..., str]):
    CREATED.append(str(make_url(make_database()).database))


def test_they_are_dropped_once_it_ends(pg_server: Server):
    """Runs after the test above: pytest keeps a module's order."""
    with psycopg.connect(libpq_uri(pg_server.uri(pg_server.maintenance_db))) as server:
        left = server.execute(
            "SELECT datname FROM pg_database WHERE datname = ANY(%s)", [CREATED]
        ).fetchall()
    assert CREATED
    assert left == []
