"""Revision 07_diagnose on a real database: back-fills updated_at, matches the models
exactly, and downgrades cleanly."""

from collections.abc import Callable

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from api import migrations
from api.models import Base


def test_upgrade_backfills_matches_models_and_downgrades(make_database: Callable[..., str]) -> None:
    engine = create_engine(make_database())
    with engine.connect() as connection:
        config = migrations.alembic_config(connection)
        command.upgrade(config, "04_chat_messages")
        connection.execute(
            text(
                """
                INSERT INTO users (id, email, password_hash)
                VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'x');
                INSERT INTO conversations (id, user_id, created_at) VALUES
                  ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-000000000001',
                   '2025-01-01T00:00:00Z'),
                  ('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-000000000001',
                   '2025-02-01T00:00:00Z');
                INSERT INTO chat_messages (conversation_id, role, content, created_at) VALUES
                  ('00000000-0000-0000-0000-0000000000c1', 'user', '{"content": "hi"}',
                   '2025-01-03T00:00:00Z');
                """
            )
        )
        connection.commit()

        command.upgrade(config, "head")
        connection.commit()
        assert migrations.current_revision(connection) == migrations.SCHEMA_HEAD == "07_diagnose"
        updated = dict(
            connection.execute(
                text("SELECT id::text, updated_at::date::text FROM conversations")
            ).all()
        )
        assert updated == {
            "00000000-0000-0000-0000-0000000000c1": "2025-01-03",
            "00000000-0000-0000-0000-0000000000c2": "2025-02-01",
        }
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert diff == []

        command.downgrade(config, "04_chat_messages")
        connection.commit()
        inspector = inspect(connection)
        assert "chat_attachments" not in inspector.get_table_names()
        assert "updated_at" not in {c["name"] for c in inspector.get_columns("conversations")}
        command.upgrade(config, "head")
        connection.commit()
    engine.dispose()
