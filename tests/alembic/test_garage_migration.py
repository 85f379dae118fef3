"""06_garage on a database of its own: models match it exactly, data survives it, and the
downgrade restores the 04 schema (seed foreign key included)."""

from __future__ import annotations

from sqlalchemy import Connection, inspect, text
from sqlalchemy.engine.interfaces import ReflectedForeignKeyConstraint

from api import migrations
from tests.harness import migrate, schema_differences

SEED_REVISION = "04_chat_messages"


def _vehicle_fk(connection: Connection) -> ReflectedForeignKeyConstraint:
    foreign_keys = inspect(connection).get_foreign_keys("conversations")
    (fk,) = [fk for fk in foreign_keys if fk["constrained_columns"] == ["vehicle_id"]]
    return fk


def test_upgrade_keeps_data_and_models_match(fresh_db: Connection) -> None:
    migrate(fresh_db, SEED_REVISION)
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

    migrate(fresh_db, "head")

    assert schema_differences(fresh_db) == []
    row = fresh_db.execute(text("SELECT make, vin, updated_at FROM vehicles")).one()
    assert row.make == "Mazda"
    assert row.vin is None
    assert row.updated_at is not None
    assert _vehicle_fk(fresh_db)["options"] == {"ondelete": "SET NULL"}
    fresh_db.execute(text("DELETE FROM vehicles"))
    assert fresh_db.execute(text("SELECT vehicle_id FROM conversations")).scalar_one() is None


def test_downgrade_restores_the_seed_schema_and_upgrades_again(fresh_db: Connection) -> None:
    migrate(fresh_db, "head")
    migrate(fresh_db, SEED_REVISION, down=True)

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

    migrate(fresh_db, "base", down=True)  # the whole chain round-trips, not just 06
    migrate(fresh_db, "head")
    assert migrations.current_revision(fresh_db) == migrations.SCHEMA_HEAD
    assert schema_differences(fresh_db) == []
