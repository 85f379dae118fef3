"""chat_attachments (image and audio bytes out of the messages), conversations.updated_at
and diagnosis_usage (the DIAGNOSES_PER_DAY ledger, which outlives deleted conversations).

`updated_at` starts as the time of each conversation's newest message (or its creation),
so lists sorted by activity are right from the first deploy. The ledger starts with the
questions of the last 24 hours, so the deploy does not hand out fresh quotas.

Revision ID: 07_diagnose
Revises: 06_garage
Create Date: 2025-08-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "07_diagnose"
down_revision: str | None = "06_garage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.execute(
        """
        UPDATE conversations AS c
        SET updated_at = GREATEST(
            c.created_at,
            COALESCE((SELECT max(m.created_at) FROM chat_messages AS m
                      WHERE m.conversation_id = c.id), c.created_at)
        )
        """
    )
    op.create_table(
        "chat_attachments",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column(
            "conversation_id",
            sa.Uuid(),
            sa.ForeignKey(
                "conversations.id", ondelete="CASCADE", name="fk_chat_attachments_conversation"
            ),
            nullable=False,
        ),
        sa.Column(
            "message_id",
            sa.Uuid(),
            sa.ForeignKey(
                "chat_messages.id", ondelete="CASCADE", name="fk_chat_attachments_message"
            ),
            nullable=True,
        ),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("mime_type", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint("kind IN ('image','audio')", name="ck_chat_attachments_kind"),
        sa.CheckConstraint("size_bytes >= 0", name="ck_chat_attachments_size"),
    )
    op.create_index("ix_chat_attachments_conversation", "chat_attachments", ["conversation_id"])
    op.create_index("ix_chat_attachments_message", "chat_attachments", ["message_id"])
    op.create_table(
        "diagnosis_usage",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_diagnosis_usage_user"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    op.create_index("ix_diagnosis_usage_user_created", "diagnosis_usage", ["user_id", "created_at"])
    op.execute(
        """
        INSERT INTO diagnosis_usage (user_id, created_at)
        SELECT c.user_id, m.created_at
        FROM chat_messages AS m JOIN conversations AS c ON c.id = m.conversation_id
        WHERE m.role = 'user' AND c.user_id IS NOT NULL
          AND m.created_at > now() - interval '1 day'
        """
    )


def downgrade() -> None:
    op.drop_table("diagnosis_usage")
    op.drop_table("chat_attachments")
    op.drop_column("conversations", "updated_at")
