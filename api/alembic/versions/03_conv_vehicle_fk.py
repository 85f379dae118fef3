"""Nullable conversations.vehicle_id foreign key.

Revision ID: 03_conv_vehicle_fk
Revises: 02_vehicle_mods
Create Date: 2025-07-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "03_conv_vehicle_fk"
down_revision: str | None = "02_vehicle_mods"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column("vehicle_id", sa.Uuid(), sa.ForeignKey("vehicles.id"), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("conversations", "vehicle_id")
