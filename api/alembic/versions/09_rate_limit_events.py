"""rate_limit_events: the timestamped rows behind the abuse throttles of issue 10 (wrong
PINs per address and purpose per day, PIN requests and failed logins or confirmations per
client address per hour), and an index on email_verification.created_at for the global
ceiling on PIN e-mails per hour.

Revision ID: 09_rate_limit_events
Revises: 08_turn_reservation
Create Date: 2026-11-29
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "09_rate_limit_events"
down_revision: str | None = "08_turn_reservation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit_events",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
    )
    # Counting one subject's events, and pruning a kind's expired ones.
    op.create_index(
        "ix_rate_limit_events_subject", "rate_limit_events", ["kind", "subject", "created_at"]
    )
    op.create_index("ix_rate_limit_events_created", "rate_limit_events", ["kind", "created_at"])
    op.create_index("ix_email_verification_created", "email_verification", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_email_verification_created", table_name="email_verification")
    op.drop_table("rate_limit_events")
