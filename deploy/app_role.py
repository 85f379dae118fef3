"""`python -m deploy.app_role`: the app's own PostgreSQL role, with data access only.

The app (DB_URI) never connects as the server's administrator. The migration path
(DB_MIGRATION_URI: the administrator, or a role that owns the schema) creates and alters
the tables; the app's role may read and write rows and nothing else: no DROP, ALTER,
TRUNCATE, CREATE or GRANT. Bicep cannot create PostgreSQL roles, so this runs once after
the infrastructure template (README "Deploy"), and again to rotate the role's password:

    DB_MIGRATION_URI=postgresql://admin:…@host:5432/axly \\
    DB_URI=postgresql://axly_app:…@host:6432/axly python -m deploy.app_role

It creates DB_URI's user (or sets its password), grants it DML on every table and sequence
that exists, and, through default privileges, on every one the migration role creates
later, so a new migration needs no grant of its own.
"""

from __future__ import annotations

import os
import sys

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

# {role} and {database} are filled in as quoted identifiers.
GRANTS = [
    "GRANT CONNECT ON DATABASE {database} TO {role}",
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
    # Tables and sequences the migration role (this connection's) creates from now on.
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public"
    " GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {role}",
    "ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {role}",
    # PostgreSQL before 15 let every role create objects in public; 15 and later do not.
    "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
]


def grant_app_role(migration: psycopg.Connection[object], role: str, password: str) -> None:
    """Create `role` (or set its password) with DML rights only, on `migration`'s database,
    connected as the role that owns the schema."""
    exists = migration.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]).fetchone()
    migration.execute(
        sql.SQL(
            "{verb} ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
            " PASSWORD {password}"
        ).format(
            verb=sql.SQL("ALTER" if exists else "CREATE"),
            role=sql.Identifier(role),
            password=sql.Literal(password),
        )
    )
    for grant in GRANTS:
        migration.execute(
            sql.SQL(grant).format(
                role=sql.Identifier(role), database=sql.Identifier(migration.info.dbname)
            )
        )


def libpq_uri(uri: str) -> str:
    """A SQLAlchemy-style URI (postgresql+psycopg://) as libpq takes it."""
    return make_url(uri).set(drivername="postgresql").render_as_string(hide_password=False)


def main() -> int:
    migration_uri, app_uri = os.environ.get("DB_MIGRATION_URI"), os.environ.get("DB_URI")
    if not migration_uri or not app_uri:
        print("Set DB_MIGRATION_URI (the schema owner) and DB_URI (the app).", file=sys.stderr)
        return 2
    app = make_url(app_uri)
    if not app.username or not app.password or app.username == make_url(migration_uri).username:
        print("DB_URI needs a user and password other than the migration role's.", file=sys.stderr)
        return 2
    with psycopg.connect(libpq_uri(migration_uri)) as connection:
        grant_app_role(connection, app.username, app.password)
    print(f"Role {app.username}: data access on {app.database}, no DDL.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
