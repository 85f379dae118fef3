"""Small helpers that arrange test data through the models (not through the API)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from api.models import ChatAttachment, ChatMessage, User
from api.services.auth import issue_access_token
from api.utils.hashing import hash_password


def create_user(session: Session, *, email: str | None = None, password: str | None = None) -> User:
    """A user that can call the API with `auth_headers(user)`; it can log in only when
    given a `password`."""
    user = User(
        email=email or f"user-{uuid.uuid4().hex[:10]}@example.com",
        password_hash=hash_password(password) if password else "!unusable",
    )
    session.add(user)
    session.flush()
    return user


def auth_headers(user: User) -> dict[str, str]:
    """A Bearer header with a fresh access token for `user` (at its current token version)."""
    return {"Authorization": f"Bearer {issue_access_token(user)}"}


def add_image(session: Session, message: ChatMessage) -> ChatAttachment:
    """A small image attached to `message` (stored bytes, as a diagnosis turn keeps them)."""
    attachment = ChatAttachment(
        conversation_id=message.conversation_id,
        message_id=message.id,
        kind="image",
        mime_type="image/png",
        size_bytes=3,
        sha256="0" * 64,
        data=b"png",
    )
    session.add(attachment)
    return attachment
