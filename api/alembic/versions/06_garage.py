"""Garage: vehicle details, update times, one VIN per user, mods indexed by vehicle, and
conversations that outlive the vehicle they were about.

- vehicles gain `submodel`, `vin`, `nickname` (nullable) and `updated_at`; vehicle_mods gain
  `updated_at` (NOT NULL, now() for existing rows; the application sets it on every update).
- `uq_vehicles_user_vin`: a VIN is unique per user; vehicles without a VIN are not compared.
- `ix_vehicle_mods_vehicle`: a vehicle's mods are read (and cascade-deleted) by vehicle_id,
  which had no index.
- conversations.vehicle_id's foreign key (seeded without ON DELETE, so deleting a vehicle that
  a conversation mentions failed) becomes `fk_conversations_vehicle_id`, ON DELETE SET NULL.

Revision ID: 06_garage
Revises: 05_accounts
Create Date: 2026-11-27
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "06_garage"
down_revision: str | None = "05_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SEED_VEHICLE_FK = "conversations_vehicle_id_fkey"  # PostgreSQL's default name in 03
VEHICLE_FK = "fk_conversations_vehicle_id"


def _updated_at() -> sa.Column:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    )


def upgrade() -> None:
    op.add_column("vehicles", sa.Column("submodel", sa.Text()))
    op.add_column("vehicles", sa.Column("vin", sa.Text()))
    op.add_column("vehicles", sa.Column("nickname", sa.Text()))
    op.add_column("vehicles", _updated_at())
    op.add_column("vehicle_mods", _updated_at())
    op.create_index(
        "uq_vehicles_user_vin",
        "vehicles",
        ["user_id", "vin"],
        unique=True,
        postgresql_where=sa.text("vin IS NOT NULL"),
    )
    op.create_index("ix_vehicle_mods_vehicle", "vehicle_mods", ["vehicle_id"])
    op.drop_constraint(SEED_VEHICLE_FK, "conversations", type_="foreignkey")
    op.create_foreign_key(
        VEHICLE_FK, "conversations", "vehicles", ["vehicle_id"], ["id"], ondelete="SET NULL"
    )


def downgrade() -> None:
    op.drop_constraint(VEHICLE_FK, "conversations", type_="foreignkey")
    op.create_foreign_key(SEED_VEHICLE_FK, "conversations", "vehicles", ["vehicle_id"], ["id"])
    op.drop_index("ix_vehicle_mods_vehicle", table_name="vehicle_mods")
    op.drop_index("uq_vehicles_user_vin", table_name="vehicles")
    op.drop_column("vehicle_mods", "updated_at")
    op.drop_column("vehicles", "updated_at")
    op.drop_column("vehicles", "nickname")
    op.drop_column("vehicles", "vin")
    op.drop_column("vehicles", "submodel")
