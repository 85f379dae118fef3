"""A diagnosis turn's reservation, the daily attachment-bytes ledger, and each attachment's
bytes stored once per user.

- `diagnosis_usage.pending_until`: set while a turn runs (the reservation its first short
  transaction writes), NULL once it is charged. A partial unique index allows one running
  turn per user. A reservation whose process died expires at `pending_until`.
- `diagnosis_usage.attachment_bytes`: bytes a turn newly stored, for ATTACHMENT_BYTES_PER_DAY.
  The last 24 hours' turns are back-filled from their messages' attachments (a ledger row
  and its question share their timestamp), so the deploy hands out no fresh allowance.
- `attachment_blobs`: the bytes, one row per user and sha256; `chat_attachments` refer to
  them (`blob_id`) and keep kind, MIME type, size and digest. Copies a user sent twice are
  merged. Attachments of conversations without an owner cannot be reached by anyone and
  are dropped (no turn ever writes one: turns always have an owner).

Revision ID: 08_turn_reservation
Revises: 07_diagnose
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "08_turn_reservation"
down_revision: str | None = "07_diagnose"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "diagnosis_usage", sa.Column("pending_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "diagnosis_usage",
        sa.Column("attachment_bytes", sa.BigInteger(), nullable=False, server_default="0"),
    )
    op.create_index(
        "uq_diagnosis_usage_running",
        "diagnosis_usage",
        ["user_id"],
        unique=True,
        postgresql_where=sa.text("pending_until IS NOT NULL"),
    )
    op.execute(
        """
        UPDATE diagnosis_usage AS u SET attachment_bytes = stored.bytes
        FROM (
            SELECT c.user_id, m.created_at, sum(a.size_bytes) AS bytes
            FROM chat_attachments AS a
            JOIN chat_messages AS m ON m.id = a.message_id
            JOIN conversations AS c ON c.id = a.conversation_id
            WHERE m.created_at > now() - interval '1 day'
            GROUP BY c.user_id, m.created_at
        ) AS stored
        WHERE u.user_id = stored.user_id AND u.created_at = stored.created_at
        """
    )

    op.create_table(
        "attachment_blobs",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_attachment_blobs_user"),
            nullable=False,
        ),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.UniqueConstraint("user_id", "sha256", name="uq_attachment_blobs_user_sha256"),
    )
    op.execute(
        """
        INSERT INTO attachment_blobs (user_id, sha256, data, created_at)
        SELECT DISTINCT ON (c.user_id, a.sha256) c.user_id, a.sha256, a.data, a.created_at
        FROM chat_attachments AS a JOIN conversations AS c ON c.id = a.conversation_id
        WHERE c.user_id IS NOT NULL
        ORDER BY c.user_id, a.sha256, a.created_at
        """
    )
    op.add_column("chat_attachments", sa.Column("blob_id", sa.Uuid(), nullable=True))
    op.execute(
        """
        UPDATE chat_attachments AS a SET blob_id = b.id
        FROM conversations AS c, attachment_blobs AS b
        WHERE c.id = a.conversation_id AND b.user_id = c.user_id AND b.sha256 = a.sha256
        """
    )
    op.execute("DELETE FROM chat_attachments WHERE blob_id IS NULL")
    op.alter_column("chat_attachments", "blob_id", nullable=False)
    op.create_foreign_key(
        "fk_chat_attachments_blob", "chat_attachments", "attachment_blobs", ["blob_id"], ["id"]
    )
    op.create_index("ix_chat_attachments_blob", "chat_attachments", ["blob_id"])
    op.drop_column("chat_attachments", "data")


def downgrade() -> None:
    op.add_column("chat_attachments", sa.Column("data", sa.LargeBinary(), nullable=True))
    op.execute(
        "UPDATE chat_attachments AS a SET data = b.data FROM attachment_blobs AS b"
        " WHERE b.id = a.blob_id"
    )
    op.alter_column("chat_attachments", "data", nullable=False)
    op.drop_index("ix_chat_attachments_blob", table_name="chat_attachments")
    op.drop_constraint("fk_chat_attachments_blob", "chat_attachments", type_="foreignkey")
    op.drop_column("chat_attachments", "blob_id")
    op.drop_table("attachment_blobs")
    # Running turns' reservations: the older code would count them as charged turns.
    op.execute("DELETE FROM diagnosis_usage WHERE pending_until IS NOT NULL")
    op.drop_index("uq_diagnosis_usage_running", table_name="diagnosis_usage")
    op.drop_column("diagnosis_usage", "attachment_bytes")
    op.drop_column("diagnosis_usage", "pending_until")
