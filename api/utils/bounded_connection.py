"""Psycopg connections that never wait for the database longer than they are told to (see
api/db.py, "Timeouts"). Imported at the first connection, not at start-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

import psycopg
from psycopg.abc import RV, PQGen

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection


def bound_waits(dbapi_connection: DBAPIConnection, limit_s: float) -> None:
    """Make the connection wait at most `limit_s` for any reply (statements, commit,
    rollback, the pool's ping), then close it and raise OperationalError.

    `Connection.wait` is where every synchronous psycopg operation waits on its socket, and
    its own `timeout` raises an OperationalError; this wraps that one method of this one
    connection. (Not a subclass: a class made by `Connection.connect` can silently be the
    base class again, once OpenTelemetry's psycopg instrumentation has been removed.) The
    connection is closed because its place in the protocol is unknown; SQLAlchemy then
    counts it as a disconnect and drops it from the pool."""
    connection = dbapi_connection
    assert isinstance(connection, psycopg.Connection)  # api.db always connects with psycopg 3
    unbounded = connection.wait

    def wait(gen: PQGen[RV], interval: float = 0.1, timeout: float | None = None) -> RV:
        try:
            return unbounded(gen, interval, limit_s if timeout is None else timeout)
        except psycopg.OperationalError:
            # Raised only for the connection itself (server errors come back as results):
            # a wait that timed out or a connection that broke. Neither can be used again.
            connection.close()
            raise

    connection.wait = wait  # this connection only
