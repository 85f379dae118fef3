"""Small helpers that arrange test data through the models (not through the API)."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from api.models import User
from api.services.auth import issue_access_token


def create_user(session: Session, *, email: str | None = None) -> User:
    """A user that can call the API with `auth_headers(user)` (no usable password)."""
    user = User(
        email=email or f"user-{uuid.uuid4().hex[:10]}@example.com", password_hash="!unusable"
    )
    session.add(user)
    session.flush()
    return user


def auth_headers(user: User) -> dict[str, str]:
    return {"Authorization": f"Bearer {issue_access_token(user)}"}
