"""A psycopg connection whose every wait is bounded: past the limit it is closed and the
caller gets an OperationalError, instead of waiting on a frozen database for ever."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

import psycopg
import pytest

from api.utils.bounded_connection import bound_waits
from deploy.app_role import libpq_uri
from devhost.database import Server
from tests.tcp_proxy import freezable_proxy

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection


def test_a_reply_that_never_comes_closes_the_connection(
    pg_server: Server, make_database: Callable[..., str]
):
    with freezable_proxy(pg_server) as proxy:
        connection = psycopg.connect(libpq_uri(proxy.uri(make_database())))
        bound_waits(cast("DBAPIConnection", connection), 0.5)  # as SQLAlchemy hands it over
        assert connection.execute("SELECT 1").fetchone() == (1,)  # answered in time
        proxy.frozen.set()
        with pytest.raises(psycopg.OperationalError):
            connection.execute("SELECT 1")
        assert connection.closed
        proxy.frozen.clear()
