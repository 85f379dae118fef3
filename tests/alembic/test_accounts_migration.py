"""05_accounts keeps the seed system's users able to log in: e-mails normalised as the API
now compares them, bcrypt hashes of raw passwords marked as legacy (and restored by the
downgrade)."""

from __future__ import annotations

import bcrypt
from sqlalchemy import Connection, text

from api.utils.hashing import LEGACY_PREFIX, verify_password
from tests.harness import migrate

SEED_HASH = bcrypt.hashpw(b"Old-Passw0rd!", bcrypt.gensalt(rounds=4)).decode()


def test_seed_users_are_normalised_and_marked_legacy(fresh_db: Connection) -> None:
    conn = fresh_db
    migrate(conn, "04_chat_messages")
    conn.execute(
        text("INSERT INTO users (email, password_hash) VALUES (:e, :h)"),
        [
            {"e": " John.Doe@Example.COM ", "h": SEED_HASH},
            {"e": "Twin@example.com", "h": SEED_HASH},
            {"e": "twin@example.com", "h": "not-bcrypt"},
        ],
    )
    conn.commit()

    migrate(conn, "05_accounts")
    users = text("SELECT email, password_hash FROM users")
    rows: dict[str, str] = dict(conn.execute(users).all())
    assert set(rows) == {"john.doe@example.com", "Twin@example.com", "twin@example.com"}
    assert rows["john.doe@example.com"] == LEGACY_PREFIX + SEED_HASH
    assert rows["twin@example.com"] == "not-bcrypt"  # not bcrypt: left unusable
    assert verify_password("Old-Passw0rd!", rows["john.doe@example.com"])
    assert not verify_password("wrong-password", rows["john.doe@example.com"])

    migrate(conn, "04_chat_messages", down=True)
    hashes = conn.execute(text("SELECT password_hash FROM users")).scalars().all()
    assert sorted(hashes) == sorted([SEED_HASH, SEED_HASH, "not-bcrypt"])
