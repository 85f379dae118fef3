"""06_garage on a database of its own: models match it exactly, data survives it, and the
downgrade restores the 04 schema (seed foreign key included)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.engine.interfaces import ReflectedForeignKeyConstraint

from api import migrations
from api.models import Base

SEED_REVISION = "04_chat_messages"


@pytest.fixture
def fresh_db(make_database: Callable[..., str]) -> Iterator[Connection]:
    engine = create_engine(make_database())
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def _alembic(connection: Connection, command_name: str, revision: str) -> None:
    from alembic import command

    getattr(command, command_name)(migrations.alembic_config(connection), revision)
    connection.commit()


def _schema_differences(connection: Connection) -> list:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def _vehicle_fk(connection: Connection) -> ReflectedForeignKeyConstraint:
    foreign_keys = inspect(connection).get_foreign_keys("conversations")
    (fk,) = [fk for fk in foreign_keys if fk["constrained_columns"] == ["vehicle_id"]]
    return fk


def test_upgrade_keeps_data_and_models_match(fresh_db: Connection) -> None:
    _alembic(fresh_db, "upgrade", SEED_REVISION)
    fresh_db.execute(
        text(
            "INSERT INTO users (id, email, password_hash) VALUES "
            "('00000000-0000-0000-0000-000000000001', 'a@example.com', 'x');"
            "INSERT INTO vehicles (id, user_id, make, model, year) VALUES "
            "('00000000-0000-0000-0000-0000000000a1', '00000000-0000-0000-0000-000000000001',"
            " 'Mazda', 'MX-5', '1990');"
            "INSERT INTO conversations (user_id, vehicle_id) VALUES "
            "('00000000-0000-0000-0000-000000000001', '00000000-0000-0000-0000-0000000000a1')"
        )
    )
    fresh_db.commit()

    _alembic(fresh_db, "upgrade", "head")

    assert _schema_differences(fresh_db) == []
    row = fresh_db.execute(text("SELECT make, vin, updated_at FROM vehicles")).one()
    assert row.make == "Mazda"
    assert row.vin is None
    assert row.updated_at is not None
    assert _vehicle_fk(fresh_db)["options"] == {"ondelete": "SET NULL"}
    fresh_db.execute(text("DELETE FROM vehicles"))
    assert fresh_db.execute(text("SELECT vehicle_id FROM conversations")).scalar_one() is None


def test_downgrade_restores_the_seed_schema_and_upgrades_again(fresh_db: Connection) -> None:
    _alembic(fresh_db, "upgrade", "head")
    _alembic(fresh_db, "downgrade", SEED_REVISION)

    inspector = inspect(fresh_db)
    assert {c["name"] for c in inspector.get_columns("vehicles")} == {
        "id",
        "user_id",
        "make",
        "model",
        "year",
        "created_at",
    }
    assert "updated_at" not in {c["name"] for c in inspector.get_columns("vehicle_mods")}
    assert {i["name"] for i in inspector.get_indexes("vehicles")} == {"ix_vehicle_user"}
    assert inspector.get_indexes("vehicle_mods") == []
    fk = _vehicle_fk(fresh_db)
    assert fk["name"] == "conversations_vehicle_id_fkey"
    assert fk["options"] == {}

    _alembic(fresh_db, "downgrade", "base")  # the whole chain round-trips, not just 06
    _alembic(fresh_db, "upgrade", "head")
    assert migrations.current_revision(fresh_db) == migrations.SCHEMA_HEAD
    assert _schema_differences(fresh_db) == []
