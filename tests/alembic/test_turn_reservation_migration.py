"""Revision 08_turn_reservation on a real database: attachment bytes move to one blob per
user and file (copies merged, nothing lost), today's turns carry the bytes they stored,
one running turn per user is enforced by the database, and the downgrade puts every byte
back where it was."""

import hashlib

import pytest
from sqlalchemy import Connection, TextClause, text
from sqlalchemy.exc import IntegrityError

from api import migrations
from tests.harness import migrate

ALICE = "00000000-0000-0000-0000-00000000000a"
BOB = "00000000-0000-0000-0000-00000000000b"
PHOTO = b"\x89PNG same photo"
CLIP = b"RIFF a recording"


C1, C2, C3 = (f"00000000-0000-0000-0000-0000000000c{n}" for n in (1, 2, 3))
A1, A2, B1 = (f"00000000-0000-0000-0000-0000000000{m}" for m in ("a1", "a2", "b1"))
SEED_07 = """
INSERT INTO users (id, email, password_hash) VALUES
  (:alice, 'alice@example.com', 'x'), (:bob, 'bob@example.com', 'x');
INSERT INTO conversations (id, user_id) VALUES (:c1, :alice), (:c2, :alice), (:c3, :bob);
INSERT INTO chat_messages (id, conversation_id, role, content, created_at) VALUES
  (:a1, :c1, 'user', '{}', now() - interval '30 hours'),
  (:a2, :c2, 'user', '{}', now() - interval '1 hour'),
  (:b1, :c3, 'user', '{}', now() - interval '2 hours');
INSERT INTO diagnosis_usage (user_id, created_at)
  SELECT c.user_id, m.created_at FROM chat_messages m
  JOIN conversations c ON c.id = m.conversation_id
  WHERE m.created_at > now() - interval '1 day';
"""
ATTACH = text(
    "INSERT INTO chat_attachments (conversation_id, message_id, kind, mime_type, size_bytes,"
    " sha256, data) VALUES (:conversation, :message, 'image', 'image/png', :size, :digest, :data)"
)
ATTACHMENTS_07 = text(
    "SELECT c.user_id::text, a.data FROM chat_attachments a"
    " JOIN conversations c ON c.id = a.conversation_id ORDER BY 1, a.size_bytes"
)
ATTACHMENTS_08 = text(
    "SELECT c.user_id::text, b.data FROM chat_attachments a"
    " JOIN conversations c ON c.id = a.conversation_id"
    " JOIN attachment_blobs b ON b.id = a.blob_id ORDER BY 1, a.size_bytes"
)


def _seed_07(connection: Connection) -> None:
    """Alice sent the same photo in two conversations (30 hours ago, and an hour ago with a
    recording); Bob sent that photo too."""
    ids = {"alice": ALICE, "bob": BOB, "c1": C1, "c2": C2, "c3": C3, "a1": A1, "a2": A2, "b1": B1}
    for statement in filter(str.strip, SEED_07.split(";")):
        connection.execute(text(statement), ids)
    for conversation, message, data in (
        (C1, A1, PHOTO),
        (C2, A2, PHOTO),
        (C2, A2, CLIP),
        (C3, B1, PHOTO),
    ):
        connection.execute(
            ATTACH,
            {
                "conversation": conversation,
                "message": message,
                "size": len(data),
                "digest": hashlib.sha256(data).hexdigest(),
                "data": data,
            },
        )
    connection.commit()


def _owned_bytes(connection: Connection, query: TextClause) -> list[tuple[str, bytes]]:
    return [(owner, bytes(data)) for owner, data in connection.execute(query)]


def test_bytes_move_to_one_blob_per_user_and_file_and_back(fresh_db: Connection) -> None:
    connection = fresh_db
    migrate(connection, "07_diagnose")
    _seed_07(connection)
    before = _owned_bytes(connection, ATTACHMENTS_07)

    migrate(connection, "08_turn_reservation")
    assert migrations.current_revision(connection) == "08_turn_reservation"
    assert _owned_bytes(connection, ATTACHMENTS_08) == before
    blobs = connection.execute(
        text("SELECT user_id::text, data FROM attachment_blobs ORDER BY user_id, length(data)")
    ).all()
    assert [(owner, bytes(data)) for owner, data in blobs] == [
        (ALICE, PHOTO),  # Alice's two copies are one blob now
        (ALICE, CLIP),
        (BOB, PHOTO),  # never shared across users
    ]
    # The turn of an hour ago stored a photo and a recording; yesterday's is out of the window.
    ledger = connection.execute(
        text("SELECT user_id::text, attachment_bytes FROM diagnosis_usage ORDER BY user_id")
    ).all()
    assert ledger == [(ALICE, len(PHOTO) + len(CLIP)), (BOB, len(PHOTO))]
    connection.rollback()

    migrate(connection, "07_diagnose", down=True)
    assert _owned_bytes(connection, ATTACHMENTS_07) == before
    connection.rollback()
    migrate(connection, "head")


def test_a_user_has_at_most_one_running_turn(fresh_db: Connection) -> None:
    connection = fresh_db
    migrate(connection, "08_turn_reservation")
    alice = {"alice": ALICE}
    connection.execute(
        text("INSERT INTO users (id, email, password_hash) VALUES (:alice, 'a@x.io', 'x')"), alice
    )
    running = text("INSERT INTO diagnosis_usage (user_id, pending_until) VALUES (:alice, now())")
    charged = text("INSERT INTO diagnosis_usage (user_id) VALUES (:alice)")
    connection.execute(running, alice)
    connection.execute(charged, alice)
    connection.execute(charged, alice)
    with pytest.raises(IntegrityError, match="uq_diagnosis_usage_running"):
        connection.execute(running, alice)
    connection.rollback()
