"""Revision 07_diagnose on a real database: back-fills updated_at and the usage ledger,
and downgrades cleanly."""

from sqlalchemy import Connection, inspect, text

from api import migrations
from tests.harness import migrate


def test_upgrade_backfills_and_downgrades(fresh_db: Connection) -> None:
    connection = fresh_db
    migrate(connection, "04_chat_messages")
    connection.execute(
        text(
            """
            INSERT INTO users (id, email, password_hash)
            VALUES ('00000000-0000-0000-0000-000000000001', 'a@example.com', 'x');
            INSERT INTO conversations (id, user_id, created_at) VALUES
              ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-000000000001',
               '2025-01-01T00:00:00Z'),
              ('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-000000000001',
               '2025-02-01T00:00:00Z'),
              ('00000000-0000-0000-0000-0000000000c3', '00000000-0000-0000-0000-000000000001',
               now() - interval '2 hours');
            INSERT INTO chat_messages (conversation_id, role, content, created_at) VALUES
              ('00000000-0000-0000-0000-0000000000c1', 'user', '{"content": "hi"}',
               '2025-01-03T00:00:00Z'),
              ('00000000-0000-0000-0000-0000000000c3', 'user', '{"content": "today"}',
               now() - interval '1 hour'),
              ('00000000-0000-0000-0000-0000000000c3', 'assistant', '{"content": "ok"}',
               now() - interval '1 hour');
            """
        )
    )
    connection.commit()

    migrate(connection, "07_diagnose")
    assert migrations.current_revision(connection) == "07_diagnose"
    updated: dict[str, str] = dict(
        connection.execute(
            text(
                "SELECT id::text, updated_at::date::text FROM conversations "
                "WHERE created_at < '2025-06-01'"
            )
        ).all()
    )
    assert updated == {
        "00000000-0000-0000-0000-0000000000c1": "2025-01-03",
        "00000000-0000-0000-0000-0000000000c2": "2025-02-01",
    }
    # Only the question of the last 24 hours counts against today's quota.
    charged = connection.execute(
        text("SELECT user_id::text, created_at FROM diagnosis_usage")
    ).all()
    asked_today = connection.scalar(
        text("SELECT created_at FROM chat_messages WHERE content->>'content' = 'today'")
    )
    assert charged == [("00000000-0000-0000-0000-000000000001", asked_today)]

    migrate(connection, "04_chat_messages", down=True)
    inspector = inspect(connection)
    assert not {"chat_attachments", "diagnosis_usage"} & set(inspector.get_table_names())
    assert "updated_at" not in {c["name"] for c in inspector.get_columns("conversations")}
    migrate(connection, "head")
