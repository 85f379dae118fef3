"""Accounts: hashed, purpose-bound PINs with an attempt count; user token versions;
refresh tokens; failed-login records for throttling.

The seed's NOT NULL `email_verification.pin` column keeps its name but now holds the PIN's
keyed HMAC-SHA256 (64 hex characters), never the PIN: a check constraint refuses anything
else, so a plain PIN cannot be stored by mistake. Rows written by the old system hold plain
PINs, so they are deleted (a PIN lived 15 minutes at most; users just ask for a new one).
The downgrade deletes the rows again, since the old code cannot read HMACs either.

Existing users keep working: their e-mails are normalised as the API now compares them
(trimmed, lower-case), and their bcrypt hashes of the raw password are marked
`legacy-bcrypt:`, verified once as they were made and replaced at that login.

Revision ID: 05_accounts
Revises: 04_chat_messages
Create Date: 2025-08-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "05_accounts"
down_revision: str | None = "04_chat_messages"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _created_at() -> sa.Column:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    )


# The seed system stored bcrypt hashes of the raw password; ours are bcrypt over a pre-hash
# (api/utils/hashing.py). Marked, the old ones still verify once and are then replaced.
LEGACY_PREFIX = "legacy-bcrypt:"


def upgrade() -> None:
    # E-mails are now compared normalised (trimmed, lower-case). Stored ones are brought in
    # line unless that would merge two accounts; such pairs keep their spelling until an
    # operator resolves them (SELECT lower(btrim(email)) FROM users GROUP BY 1
    # HAVING count(*) > 1 lists them).
    op.execute(
        """
        UPDATE users AS u SET email = lower(btrim(u.email))
        WHERE u.email <> lower(btrim(u.email))
          AND NOT EXISTS (
              SELECT 1 FROM users AS other
              WHERE other.id <> u.id AND lower(btrim(other.email)) = lower(btrim(u.email))
          )
        """
    )
    op.execute(
        sa.text(
            "UPDATE users SET password_hash = :prefix || password_hash "
            "WHERE password_hash LIKE '$2_$%'"
        ).bindparams(prefix=LEGACY_PREFIX)
    )
    op.add_column(
        "users",
        sa.Column("token_version", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )

    op.execute("DELETE FROM email_verification")
    op.add_column("email_verification", sa.Column("purpose", sa.Text(), nullable=False))
    op.add_column(
        "email_verification",
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
    )
    op.add_column("email_verification", _timestamp("consumed_at", nullable=True))
    op.create_check_constraint(
        "email_verification_purpose_check",
        "email_verification",
        "purpose IN ('signup','password_reset')",
    )
    op.create_check_constraint(
        "email_verification_pin_is_hmac", "email_verification", "pin ~ '^[0-9a-f]{64}$'"
    )
    op.create_index(
        "ix_email_verification_email_purpose",
        "email_verification",
        ["email", "purpose", "created_at"],
    )

    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column(
            "user_id",
            sa.Uuid(),
            sa.ForeignKey("users.id", ondelete="CASCADE", name="fk_refresh_tokens_user"),
            nullable=False,
        ),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.Text(), nullable=False),
        _timestamp("expires_at"),
        _created_at(),
        _timestamp("revoked_at", nullable=True),
        sa.Column(
            "replaced_by_id",
            sa.Uuid(),
            sa.ForeignKey(
                "refresh_tokens.id", ondelete="SET NULL", name="fk_refresh_tokens_replaced_by"
            ),
        ),
        sa.UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),
    )
    op.create_index("ix_refresh_tokens_user", "refresh_tokens", ["user_id"])
    op.create_index("ix_refresh_tokens_family", "refresh_tokens", ["family_id"])

    op.create_table(
        "login_failures",
        sa.Column("id", sa.Uuid(), primary_key=True, server_default=sa.text("gen_random_uuid()")),
        sa.Column("email", sa.Text(), nullable=False),
        _created_at(),
    )
    op.create_index("ix_login_failures_email_created", "login_failures", ["email", "created_at"])


def downgrade() -> None:
    op.drop_table("login_failures")
    op.drop_table("refresh_tokens")
    op.execute("DELETE FROM email_verification")
    op.drop_index("ix_email_verification_email_purpose", table_name="email_verification")
    op.drop_constraint("email_verification_pin_is_hmac", "email_verification", type_="check")
    op.drop_constraint("email_verification_purpose_check", "email_verification", type_="check")
    op.drop_column("email_verification", "consumed_at")
    op.drop_column("email_verification", "attempts")
    op.drop_column("email_verification", "purpose")
    op.drop_column("users", "token_version")
    # Hashes made since the upgrade cannot be read by the old code; its own ones can again.
    op.execute(
        sa.text(
            "UPDATE users SET password_hash = substr(password_hash, :start) "
            "WHERE password_hash LIKE :pattern"
        ).bindparams(start=len(LEGACY_PREFIX) + 1, pattern=LEGACY_PREFIX + "%")
    )
