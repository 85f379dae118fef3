"""The Alembic migrations on a real PostgreSQL: every revision upgrades and downgrades
cleanly, the chat-history move in 04 loses nothing, and the models match the migrated
schema. Each test gets its own empty database."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, bindparam, inspect, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from api import migrations
from tests.harness import migrate, schema_differences

SCRIPT = ScriptDirectory.from_config(migrations.alembic_config())
# Oldest first: the order `alembic upgrade` applies them in.
REVISIONS = list(reversed(list(SCRIPT.walk_revisions())))


def revision_of(conn: Connection) -> str | None:
    revision = migrations.current_revision(conn)
    conn.commit()
    return revision


@contextmanager
def rolled_back(conn: Connection) -> Iterator[Connection]:
    """A transaction that leaves no trace, so the next Alembic command starts clean."""
    transaction = conn.begin()
    try:
        yield conn
    finally:
        transaction.rollback()


# --- schema inspection ------------------------------------------------------------------


def schema_snapshot(conn: Connection) -> dict[str, dict[str, Any]]:
    """Everything about the application tables that a migration may change."""
    with rolled_back(conn):
        return _snapshot(inspect(conn))


def _snapshot(insp: Any) -> dict[str, dict[str, Any]]:
    snapshot: dict[str, dict[str, Any]] = {}
    for table in sorted(insp.get_table_names()):
        if table == "alembic_version":
            continue
        snapshot[table] = {
            "columns": {
                c["name"]: (
                    c["type"].compile(dialect=postgresql.dialect()),
                    c["nullable"],
                    c.get("default"),
                )
                for c in insp.get_columns(table)
            },
            "primary_key": insp.get_pk_constraint(table)["constrained_columns"],
            "foreign_keys": sorted(
                (
                    fk["name"],
                    tuple(fk["constrained_columns"]),
                    fk["referred_table"],
                    tuple(fk["referred_columns"]),
                    fk["options"].get("ondelete"),
                )
                for fk in insp.get_foreign_keys(table)
            ),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), ix["unique"])
                for ix in insp.get_indexes(table)
            ),
            "unique": sorted(
                (uq["name"], tuple(uq["column_names"])) for uq in insp.get_unique_constraints(table)
            ),
            "checks": sorted(
                (ck["name"], ck["sqltext"]) for ck in insp.get_check_constraints(table)
            ),
        }
    return snapshot


def columns(snapshot: dict[str, dict[str, Any]], table: str) -> dict[str, tuple]:
    return snapshot[table]["columns"]


def foreign_key(snapshot: dict[str, dict[str, Any]], table: str, column: str) -> tuple:
    (fk,) = [fk for fk in snapshot[table]["foreign_keys"] if fk[1] == (column,)]
    return fk[2:]  # (referred table, referred columns, ON DELETE)


def index_columns(snapshot: dict[str, dict[str, Any]], table: str, name: str) -> tuple[str, ...]:
    (columns_,) = [ix[1] for ix in snapshot[table]["indexes"] if ix[0] == name]
    return columns_


def assert_uuid_ids_are_generated(snapshot: dict[str, dict[str, Any]]) -> None:
    """House rule: a UUID `id` primary key defaults to gen_random_uuid() in the database,
    so rows inserted outside the ORM (SQL, data migrations) get an id too."""
    for table, info in snapshot.items():
        if info["primary_key"] == ["id"] and info["columns"]["id"][0] == "UUID":
            assert info["columns"]["id"][2] == "gen_random_uuid()", table


# --- what each known revision must leave behind --------------------------------------------


def check_01_initial(conn: Connection, schema: dict[str, dict[str, Any]]) -> None:
    assert set(schema) == {"users", "email_verification", "vehicles", "conversations"}
    assert set(columns(schema, "users")) == {"id", "email", "password_hash", "created_at"}
    assert [uq[1] for uq in schema["users"]["unique"]] == [("email",)]
    assert set(columns(schema, "email_verification")) == {
        "id",
        "email",
        "pin",
        "expires_at",
        "created_at",
    }
    assert set(columns(schema, "vehicles")) == {
        "id",
        "user_id",
        "make",
        "model",
        "year",
        "created_at",
    }
    assert foreign_key(schema, "vehicles", "user_id") == ("users", ("id",), "CASCADE")
    assert index_columns(schema, "vehicles", "ix_vehicle_user") == ("user_id",)
    conversation = columns(schema, "conversations")
    assert set(conversation) == {"id", "user_id", "title", "history_json", "created_at"}
    assert conversation["history_json"][:2] == ("JSONB", True)
    assert foreign_key(schema, "conversations", "user_id") == ("users", ("id",), "CASCADE")
    assert index_columns(schema, "conversations", "ix_conv_user") == ("user_id",)
    for table in schema:
        assert columns(schema, table)["created_at"] == ("TIMESTAMP WITH TIME ZONE", False, "now()")
    # The database fills in ids and timestamps on its own; e-mails are unique.
    with rolled_back(conn):
        insert = text("INSERT INTO users (email, password_hash) VALUES ('a@x.io', 'h') RETURNING *")
        row = conn.execute(insert).one()
        assert isinstance(row.id, uuid.UUID)
        assert row.created_at.tzinfo is not None
        with pytest.raises(IntegrityError, match="users_email_key"), conn.begin_nested():
            conn.execute(insert)


def check_02_vehicle_mods(conn: Connection, schema: dict[str, dict[str, Any]]) -> None:
    assert set(columns(schema, "vehicle_mods")) == {
        "id",
        "vehicle_id",
        "name",
        "description",
        "installed_on",
        "created_at",
    }
    assert columns(schema, "vehicle_mods")["installed_on"][:2] == ("DATE", True)
    assert foreign_key(schema, "vehicle_mods", "vehicle_id") == ("vehicles", ("id",), "CASCADE")
    # Deleting a vehicle takes its mods with it.
    with rolled_back(conn):
        insert = "INSERT INTO vehicles (make, model, year) VALUES ('VW', 'Golf', '04') RETURNING id"
        vehicle = conn.execute(text(insert)).scalar_one()
        conn.execute(
            text("INSERT INTO vehicle_mods (vehicle_id, name) VALUES (:v, 'Coilovers')"),
            {"v": vehicle},
        )
        conn.execute(text("DELETE FROM vehicles WHERE id = :v"), {"v": vehicle})
        assert conn.execute(text("SELECT count(*) FROM vehicle_mods")).scalar_one() == 0


def check_03_conv_vehicle_fk(conn: Connection, schema: dict[str, dict[str, Any]]) -> None:
    vehicle_id = columns(schema, "conversations")["vehicle_id"]
    assert vehicle_id[:2] == ("UUID", True)
    assert foreign_key(schema, "conversations", "vehicle_id") == ("vehicles", ("id",), None)
    assert "history_json" in columns(schema, "conversations")


def check_04_chat_messages(conn: Connection, schema: dict[str, dict[str, Any]]) -> None:
    assert "history_json" not in columns(schema, "conversations")
    message = columns(schema, "chat_messages")
    assert set(message) == {"id", "conversation_id", "role", "content", "created_at"}
    assert message["content"][:2] == ("JSONB", True)
    assert foreign_key(schema, "chat_messages", "conversation_id") == (
        "conversations",
        ("id",),
        "CASCADE",
    )
    assert index_columns(schema, "chat_messages", "ix_msg_conv") == ("conversation_id",)
    assert [name for name, _ in schema["chat_messages"]["checks"]] == ["chat_messages_role_check"]
    with rolled_back(conn):
        conversation = conn.execute(
            text("INSERT INTO conversations (title) VALUES ('t') RETURNING id")
        ).scalar_one()
        insert = text(
            "INSERT INTO chat_messages (conversation_id, role, content) VALUES (:c, :role, '{}')"
        )
        for role in ("user", "assistant"):
            conn.execute(insert, {"c": conversation, "role": role})
        with pytest.raises(IntegrityError, match="chat_messages_role_check"), conn.begin_nested():
            conn.execute(insert, {"c": conversation, "role": "system"})
        conn.execute(text("DELETE FROM conversations WHERE id = :c"), {"c": conversation})
        assert conn.execute(text("SELECT count(*) FROM chat_messages")).scalar_one() == 0


REVISION_CHECKS: dict[str, Callable[[Connection, dict[str, dict[str, Any]]], None]] = {
    "01_initial": check_01_initial,
    "02_vehicle_mods": check_02_vehicle_mods,
    "03_conv_vehicle_fk": check_03_conv_vehicle_fk,
    "04_chat_messages": check_04_chat_messages,
}


def test_the_known_revisions_are_in_the_script_directory():
    """Guards the checks above against a renamed or reordered revision."""
    assert [rev.revision for rev in REVISIONS][: len(REVISION_CHECKS)] == list(REVISION_CHECKS)


def test_every_revision_upgrades_and_downgrades(fresh_db: Connection):
    """Walk base → head one revision at a time, then back to base: each step lands on its
    revision with the schema it promises, and each downgrade restores exactly the schema
    the previous revision had."""
    conn = fresh_db
    assert revision_of(conn) is None
    snapshots: dict[str | None, dict[str, dict[str, Any]]] = {None: schema_snapshot(conn)}
    assert snapshots[None] == {}

    for rev in REVISIONS:
        migrate(conn, rev.revision)
        assert revision_of(conn) == rev.revision
        snapshot = schema_snapshot(conn)
        assert_uuid_ids_are_generated(snapshot)
        if check := REVISION_CHECKS.get(rev.revision):
            check(conn, snapshot)
        snapshots[rev.revision] = snapshot

    assert revision_of(conn) == migrations.SCHEMA_HEAD

    for rev in reversed(REVISIONS):
        target = rev.down_revision
        assert isinstance(target, str | None), "branched history is not supported"
        migrate(conn, target or "base", down=True)
        assert revision_of(conn) == target
        assert schema_snapshot(conn) == snapshots[target], f"downgrade of {rev.revision}"

    with rolled_back(conn):
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 0


# --- 04: history_json → chat_messages ------------------------------------------------------

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)

HISTORIES: dict[str, list[dict[str, Any]] | None] = {
    "plain": [
        {"role": "user", "text": "My Golf idles rough"},
        {"role": "assistant", "text": "Check the vacuum lines first."},
        {"role": "user", "text": "Found a cracked hose, thanks!"},
        {"role": "assistant", "text": "Great, replace it and clear the codes."},
    ],
    "unicode": [
        {"role": "user", "text": "Привет! Моя машина 🚗 стучит — что делать? 日本語も"},
        {"role": "assistant", "text": 'Ça dépend… "quotes", back\\slash, tab\t, newline\n'},
    ],
    "nested": [
        {
            "role": "user",
            "text": "See the photo",
            "attachments": [{"type": "image", "url": "https://x.io/a.jpg", "size": {"w": 640}}],
        },
        {
            "role": "assistant",
            "text": "That is the PCV valve.",
            "sources": [],
            "meta": {"model": "gpt", "tokens": 42, "score": 0.5, "ok": True, "extra": None},
        },
        {"role": "user"},
    ],
    # Enough turns that an ordering mistake shows instead of passing by luck.
    "long": [
        {"role": "user" if i % 2 == 0 else "assistant", "text": f"turn {i}", "n": i}
        for i in range(60)
    ],
    "empty": [],
    "null": None,
}


def test_04_moves_every_history_turn_into_chat_messages_and_back(fresh_db: Connection):
    conn = fresh_db
    migrate(conn, "03_conv_vehicle_fk")
    ids: dict[str, uuid.UUID] = {}
    with conn.begin():
        users = [
            conn.execute(
                text("INSERT INTO users (email, password_hash) VALUES (:e, 'h') RETURNING id"),
                {"e": f"user{i}@axly.test"},
            ).scalar_one()
            for i in range(2)
        ]
        for i, (name, history) in enumerate(HISTORIES.items()):
            ids[name] = conn.execute(
                text(
                    "INSERT INTO conversations (user_id, title, history_json, created_at) "
                    "VALUES (:u, :t, :h, :at) RETURNING id"
                ).bindparams(bindparam("h", type_=JSONB(none_as_null=True))),
                {
                    "u": users[i % 2],
                    "t": name,
                    "h": history,
                    # All from the same instant (a bulk import): turns are ordered within
                    # their conversation, never by timestamp alone across conversations.
                    "at": T0,
                },
            ).scalar_one()

    migrate(conn, "04_chat_messages")

    with rolled_back(conn):
        total = conn.execute(text("SELECT count(*) FROM chat_messages")).scalar_one()
        assert total == sum(len(h or []) for h in HISTORIES.values())
        for name, history in HISTORIES.items():
            rows = conn.execute(
                text(
                    "SELECT role, content FROM chat_messages WHERE conversation_id = :c "
                    "ORDER BY created_at, id"
                ),
                {"c": ids[name]},
            ).all()
            expected = [
                (turn["role"], {k: v for k, v in turn.items() if k != "role"})
                for turn in history or []
            ]
            assert [tuple(row) for row in rows] == expected, name

    migrate(conn, "03_conv_vehicle_fk", down=True)

    with rolled_back(conn):
        query = text("SELECT id, history_json FROM conversations")
        restored: dict[uuid.UUID, Any] = dict(conn.execute(query).all())
        assert "chat_messages" not in inspect(conn).get_table_names()
    for name, history in HISTORIES.items():
        if history:
            assert restored[ids[name]] == history, name
    assert restored[ids["null"]] is None


# --- models ↔ migrations -----------------------------------------------------------------


def test_models_match_the_migrated_schema(fresh_db: Connection):
    migrate(fresh_db, "head")
    assert schema_differences(fresh_db) == []


def test_schema_head_constant_is_the_single_alembic_head():
    """SCHEMA_HEAD lets an up-to-date instance skip Alembic; if it lagged behind a new
    revision, start-up would never apply that revision."""
    heads = SCRIPT.get_heads()
    assert len(heads) == 1, f"several heads, merge them: {heads}"
    assert SCRIPT.get_current_head() == migrations.SCHEMA_HEAD
    assert REVISIONS[-1].revision == migrations.SCHEMA_HEAD
