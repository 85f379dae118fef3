"""Accounts and sessions."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from api.errors import AuthenticationError
from api.models import User
from api.services.tokens import decode_token, encode_token
from api.settings import get_settings


def issue_access_token(user: User) -> str:
    lifetime = timedelta(minutes=get_settings().access_token_minutes)
    token, _ = encode_token(user.id, "access", lifetime)
    return token


def authenticate(*, session: Session, token: str) -> User:
    """The user an access token belongs to; 401 for any token that is not currently valid."""
    claims = decode_token(token, "access")
    user = session.get(User, claims["sub"])
    if user is None:
        raise AuthenticationError("The account no longer exists", code="invalid_token")
    return user
