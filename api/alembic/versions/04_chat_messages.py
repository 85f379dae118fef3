"""chat_messages table; every conversation's history_json turns become rows, in order.

Each turn `{"role": ..., <other keys>}` becomes a row with that role and the turn's other
keys as `content`; `created_at` is the conversation's plus the turn's position in
microseconds, so ordering by it replays the history. The downgrade rebuilds the arrays.

Revision ID: 04_chat_messages
Revises: 03_conv_vehicle_fk
Create Date: 2025-07-20
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "04_chat_messages"
down_revision: str | None = "03_conv_vehicle_fk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_messages",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column(
            "conversation_id", sa.Uuid(), sa.ForeignKey("conversations.id", ondelete="CASCADE")
        ),
        sa.Column("role", sa.Text()),
        sa.Column("content", JSONB()),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint("role IN ('user','assistant')", name="chat_messages_role_check"),
    )
    op.create_index("ix_msg_conv", "chat_messages", ["conversation_id"])
    op.execute(
        """
        INSERT INTO chat_messages (conversation_id, role, content, created_at)
        SELECT c.id, turn.value ->> 'role', turn.value - 'role',
               c.created_at + (turn.ordinality - 1) * interval '1 microsecond'
        FROM conversations AS c
        CROSS JOIN LATERAL jsonb_array_elements(c.history_json) WITH ORDINALITY AS turn
        WHERE jsonb_typeof(c.history_json) = 'array'
        """
    )
    op.drop_column("conversations", "history_json")


def downgrade() -> None:
    op.add_column("conversations", sa.Column("history_json", JSONB()))
    op.execute(
        """
        UPDATE conversations AS c
        SET history_json = moved.turns
        FROM (
            SELECT conversation_id,
                   jsonb_agg(COALESCE(content, '{}'::jsonb) || jsonb_build_object('role', role)
                             ORDER BY created_at, id) AS turns
            FROM chat_messages
            GROUP BY conversation_id
        ) AS moved
        WHERE moved.conversation_id = c.id
        """
    )
    op.drop_table("chat_messages")
