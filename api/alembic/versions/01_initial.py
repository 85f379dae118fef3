"""Initial schema: users, e-mail verification, vehicles, conversations (with history_json).

Revision ID: 01_initial
Revises:
Create Date: 2025-06-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "01_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UUID_PK = {"primary_key": True, "server_default": sa.text("gen_random_uuid()")}


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    )


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), **UUID_PK),
        sa.Column("email", sa.Text(), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text(), nullable=False),
        _created_at(),
    )
    op.create_table(
        "email_verification",
        sa.Column("id", sa.Uuid(), **UUID_PK),
        sa.Column("email", sa.Text(), nullable=False),
        sa.Column("pin", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _created_at(),
    )
    op.create_table(
        "vehicles",
        sa.Column("id", sa.Uuid(), **UUID_PK),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("make", sa.Text(), nullable=False),
        sa.Column("model", sa.Text(), nullable=False),
        sa.Column("year", sa.Text(), nullable=False),
        _created_at(),
    )
    op.create_index("ix_vehicle_user", "vehicles", ["user_id"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.Uuid(), **UUID_PK),
        sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE")),
        sa.Column("title", sa.Text()),
        sa.Column("history_json", JSONB()),
        _created_at(),
    )
    op.create_index("ix_conv_user", "conversations", ["user_id"])


def downgrade() -> None:
    op.drop_table("conversations")
    op.drop_table("vehicles")
    op.drop_table("email_verification")
    op.drop_table("users")
