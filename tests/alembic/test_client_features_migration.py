"""Revision 10_client_features on a real database: existing conversations keep working with
no language (they take the next one asked for), a key is either running or answered, one key
per user, and the downgrade removes both cleanly."""

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError

from tests.harness import migrate

ALICE = "00000000-0000-0000-0000-00000000000a"
CONVERSATION = "00000000-0000-0000-0000-0000000000c1"
KEY = text(
    "INSERT INTO idempotency_keys (user_id, key, fingerprint, expires_at, locked_until,"
    " response_status) VALUES (:alice, :key, '\\x00', now() + interval '1 day', :until, :status)"
)


def test_conversations_keep_working_and_keys_are_running_or_answered(
    fresh_db: Connection,
) -> None:
    connection = fresh_db
    migrate(connection, "09_rate_limit_events")
    ids = {"alice": ALICE, "conversation": CONVERSATION}
    connection.execute(
        text("INSERT INTO users (id, email, password_hash) VALUES (:alice, 'a@x.io', 'x')"), ids
    )
    connection.execute(
        text(
            "INSERT INTO conversations (id, user_id, title) VALUES (:conversation, :alice, 'Old')"
        ),
        ids,
    )
    connection.commit()

    migrate(connection, "10_client_features")
    language = connection.execute(text("SELECT language FROM conversations")).scalar_one()
    assert language is None
    connection.execute(
        KEY, {"alice": ALICE, "key": "running", "until": "2030-01-01", "status": None}
    )
    connection.execute(KEY, {"alice": ALICE, "key": "answered", "until": None, "status": 201})
    for key, until, status in (("both", "2030-01-01", 201), ("neither", None, None)):
        with (
            pytest.raises(IntegrityError, match="ck_idempotency_keys_running_or_answered"),
            connection.begin_nested(),
        ):
            connection.execute(KEY, {"alice": ALICE, "key": key, "until": until, "status": status})
    with (
        pytest.raises(IntegrityError, match="uq_idempotency_keys_user_key"),
        connection.begin_nested(),
    ):
        connection.execute(KEY, {"alice": ALICE, "key": "answered", "until": None, "status": 200})
    connection.execute(text("DELETE FROM users"))  # a user's keys go with the account
    assert connection.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one() == 0
    connection.rollback()

    migrate(connection, "09_rate_limit_events", down=True)
    tables = connection.execute(
        text("SELECT count(*) FROM pg_tables WHERE tablename = 'idempotency_keys'")
    ).scalar_one()
    columns = connection.execute(
        text(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'conversations' AND column_name = 'language'"
        )
    ).scalar_one()
    assert (tables, columns) == (0, 0)
    connection.rollback()
    migrate(connection, "head")
