"""Idempotency keys for safe retries, and the language a conversation is answered in.

- `idempotency_keys`: one row per user and `Idempotency-Key` of an idempotent operation
  (POST diagnose2, vehicles, mods): the request's fingerprint (SHA-256 of method, path and
  body), `locked_until` while the first request runs (NULL once it answered), then the
  response to replay (status, headers, body). A row lives 24 hours (`expires_at`); expired
  rows are swept as new keys are claimed (hence the index on `expires_at`), and a user's
  rows go with the account.
- `conversations.language`: the answer language chosen on the conversation's first turn
  (or changed by a `language` field later); NULL for conversations from before, which take
  the language the next request asks for.

Revision ID: 10_client_features
Revises: 09_rate_limit_events
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "10_client_features"
down_revision: str | None = "09_rate_limit_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_idempotency_keys_user"),
            nullable=False,
        ),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("response_status", sa.SmallInteger(), nullable=True),
        sa.Column("response_headers", JSONB(), nullable=True),
        sa.Column("response_body", sa.LargeBinary(), nullable=True),
        sa.UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
        sa.CheckConstraint(
            "(locked_until IS NULL) = (response_status IS NOT NULL)",
            name="ck_idempotency_keys_running_or_answered",
        ),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])
    op.add_column("conversations", sa.Column("language", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("conversations", "language")
    op.drop_index("ix_idempotency_keys_expires_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
