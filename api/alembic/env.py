"""Alembic environment: runs on the connection the API hands over (start-up upgrade, tests),
or opens one from DB_MIGRATION_URI, else DB_URI (the `alembic upgrade head` deploy step)."""

from alembic import context
from sqlalchemy import Connection

from api.models import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, transaction_per_migration=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from api.db import migration_engine
    from api.settings import get_settings

    engine = migration_engine(get_settings())
    with engine.connect() as connection:
        _run(connection)
        connection.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("Offline (SQL script) migrations are not supported; run against a database")
run_migrations_online()
