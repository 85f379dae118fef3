"""SQLAlchemy 2.x models. They mirror api/alembic/versions exactly (a test autogenerates
against a migrated database and expects no difference)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    """Timestamps come from Python (not the transaction's now()) so ordering within one
    transaction is stable and tests can travel in time."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), str: Text, uuid.UUID: Uuid}


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(
        primary_key=True, server_default=text("gen_random_uuid()"), default=uuid.uuid4
    )


def _created_at() -> Mapped[datetime]:
    return mapped_column(server_default=text("now()"), default=utcnow)


def _updated_at() -> Mapped[datetime]:
    """Set by the ORM on every UPDATE it issues (bulk UPDATE statements must set it too)."""
    return mapped_column(server_default=text("now()"), default=utcnow, onupdate=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = _id()
    email: Mapped[str] = mapped_column(unique=True)
    password_hash: Mapped[str]
    created_at: Mapped[datetime] = _created_at()
    # Every token carries the version it was issued under; bumping it (password change or
    # reset, logout everywhere) makes all older tokens fail.
    token_version: Mapped[int] = mapped_column(server_default=text("0"), default=0)

    vehicles: Mapped[list[Vehicle]] = relationship(
        back_populates="user", passive_deletes=True, order_by="Vehicle.created_at.desc()"
    )


class EmailVerification(Base):
    """One e-mailed PIN. The seed's `pin` column holds the PIN's keyed HMAC, never the PIN
    (see api/services/pins.py); rows also serve as the record that throttles sending."""

    __tablename__ = "email_verification"
    __table_args__ = (
        CheckConstraint(
            "purpose IN ('signup','password_reset')", name="email_verification_purpose_check"
        ),
        CheckConstraint("pin ~ '^[0-9a-f]{64}$'", name="email_verification_pin_is_hmac"),
        Index("ix_email_verification_email_purpose", "email", "purpose", "created_at"),
        Index("ix_email_verification_created", "created_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    email: Mapped[str]
    pin_hmac: Mapped[str] = mapped_column("pin")
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = _created_at()
    purpose: Mapped[str]
    attempts: Mapped[int] = mapped_column(server_default=text("0"), default=0)
    # Set when the PIN is used, replaced by a newer one, or dead after too many wrong tries.
    consumed_at: Mapped[datetime | None]


class RefreshToken(Base):
    """A refresh token, stored only as its SHA-256. Rotation links each token to its
    successor within one family (one login); reuse of a rotated token revokes the family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_user", "user_id"),
        Index("ix_refresh_tokens_family", "family_id"),
        UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),
    )

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE", name="fk_refresh_tokens_user")
    )
    family_id: Mapped[uuid.UUID]
    token_hash: Mapped[str]
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = _created_at()
    revoked_at: Mapped[datetime | None]
    replaced_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("refresh_tokens.id", ondelete="SET NULL", name="fk_refresh_tokens_replaced_by")
    )


class LoginFailure(Base):
    """A failed password check for an e-mail (known or not, so throttling reveals nothing)."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_email_created", "email", "created_at"),)

    id: Mapped[uuid.UUID] = _id()
    email: Mapped[str]
    created_at: Mapped[datetime] = _created_at()


class RateLimitEvent(Base):
    """One event a throttle counts (api/services/limits.py): a wrong PIN for an address and
    purpose, a PIN request or an authentication failure from a client address. Expired
    events of a kind are pruned as new ones are written."""

    __tablename__ = "rate_limit_events"
    __table_args__ = (
        Index("ix_rate_limit_events_subject", "kind", "subject", "created_at"),
        Index("ix_rate_limit_events_created", "kind", "created_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    kind: Mapped[str]
    subject: Mapped[str]
    created_at: Mapped[datetime] = _created_at()


VIN_PER_USER_INDEX = "uq_vehicles_user_vin"


class Vehicle(Base):
    __tablename__ = "vehicles"
    __table_args__ = (
        Index("ix_vehicle_user", "user_id"),
        Index(
            VIN_PER_USER_INDEX,
            "user_id",
            "vin",
            unique=True,
            postgresql_where=text("vin IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    make: Mapped[str]
    model: Mapped[str]
    year: Mapped[str]  # four digits; TEXT since the seed schema
    submodel: Mapped[str | None]
    vin: Mapped[str | None]
    nickname: Mapped[str | None]
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    user: Mapped[User | None] = relationship(back_populates="vehicles")
    mods: Mapped[list[VehicleMod]] = relationship(
        back_populates="vehicle",
        passive_deletes=True,
        order_by="(VehicleMod.created_at.desc(), VehicleMod.id.desc())",
    )


class VehicleMod(Base):
    __tablename__ = "vehicle_mods"
    __table_args__ = (Index("ix_vehicle_mods_vehicle", "vehicle_id"),)

    id: Mapped[uuid.UUID] = _id()
    vehicle_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("vehicles.id", ondelete="CASCADE")
    )
    name: Mapped[str]
    description: Mapped[str | None]
    installed_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = _updated_at()

    vehicle: Mapped[Vehicle | None] = relationship(back_populates="mods")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (Index("ix_conv_user", "user_id"),)

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # SET NULL: a conversation keeps its history when the vehicle it was about is deleted.
    vehicle_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("vehicles.id", ondelete="SET NULL", name="fk_conversations_vehicle_id")
    )
    title: Mapped[str | None]
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(server_default=text("now()"), default=utcnow)
    # The language answers are written in (api/services/language.py); NULL on conversations
    # from before languages, which take the one their next request asks for.
    language: Mapped[str | None]

    messages: Mapped[list[ChatMessage]] = relationship(
        back_populates="conversation",
        passive_deletes=True,
        order_by="(ChatMessage.created_at, ChatMessage.id)",
    )


class ChatMessage(Base):
    __tablename__ = "chat_messages"
    __table_args__ = (
        CheckConstraint("role IN ('user','assistant')", name="chat_messages_role_check"),
        Index("ix_msg_conv", "conversation_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    conversation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE")
    )
    role: Mapped[str | None]
    content: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = _created_at()

    conversation: Mapped[Conversation | None] = relationship(back_populates="messages")


class AttachmentBlob(Base):
    """The bytes of an image or recording, stored once per user however many messages
    carry the same file (same sha256). Deleted with the last attachment that refers to it
    (api/services/conversations.py) or with its owner."""

    __tablename__ = "attachment_blobs"
    __table_args__ = (
        UniqueConstraint("user_id", "sha256", name="uq_attachment_blobs_user_sha256"),
    )

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE", name="fk_attachment_blobs_user")
    )
    sha256: Mapped[str]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()


class ChatAttachment(Base):
    """An image or recording a user sent: what it is, with its bytes in `AttachmentBlob`.
    Kept out of `chat_messages.content` (which only references it) so history stays small;
    deleted with its conversation."""

    __tablename__ = "chat_attachments"
    __table_args__ = (
        CheckConstraint("kind IN ('image','audio')", name="ck_chat_attachments_kind"),
        CheckConstraint("size_bytes >= 0", name="ck_chat_attachments_size"),
        Index("ix_chat_attachments_conversation", "conversation_id"),
        Index("ix_chat_attachments_message", "message_id"),
        Index("ix_chat_attachments_blob", "blob_id"),
    )

    id: Mapped[uuid.UUID] = _id()
    conversation_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE", name="fk_chat_attachments_conversation")
    )
    message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("chat_messages.id", ondelete="CASCADE", name="fk_chat_attachments_message")
    )
    blob_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("attachment_blobs.id", name="fk_chat_attachments_blob")
    )
    kind: Mapped[str]
    mime_type: Mapped[str]
    size_bytes: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str]
    created_at: Mapped[datetime] = _created_at()


class DiagnosisUsage(Base):
    """One diagnosis a user was charged for, or is running (`pending_until` set: the turn's
    reservation, at most one per user, expiring then): the ledger behind DIAGNOSES_PER_DAY
    and ATTACHMENT_BYTES_PER_DAY. Kept apart from the messages so deleting a conversation
    gives nothing back; rows older than the 24-hour window are pruned as new ones are
    written."""

    __tablename__ = "diagnosis_usage"
    __table_args__ = (
        Index("ix_diagnosis_usage_user_created", "user_id", "created_at"),
        Index(
            "uq_diagnosis_usage_running",
            "user_id",
            unique=True,
            postgresql_where=text("pending_until IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE", name="fk_diagnosis_usage_user")
    )
    created_at: Mapped[datetime] = _created_at()
    pending_until: Mapped[datetime | None]
    # Bytes of attachments the turn stored anew (files the user had already sent count 0).
    attachment_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"), default=0)


class IdempotencyKey(Base):
    """An `Idempotency-Key` a user sent with an idempotent request (api/services/idempotency.py):
    what the request was (`fingerprint`), `locked_until` while it runs, then the response
    to replay. Lives until `expires_at` (24 hours)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
        CheckConstraint(
            "(locked_until IS NULL) = (response_status IS NOT NULL)",
            name="ck_idempotency_keys_running_or_answered",
        ),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[uuid.UUID] = _id()
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE", name="fk_idempotency_keys_user")
    )
    key: Mapped[str]
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = _created_at()
    expires_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_headers: Mapped[dict[str, str] | None] = mapped_column(JSONB)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary)
