"""Request and response bodies of the accounts area."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StrictBool,
)

from api.schemas.common import InputModel, NewSecret, Omittable, OneLine, OutputModel, Secret
from api.utils.hashing import is_common_password

PASSWORD_MIN, PASSWORD_MAX = 8, 128


def _normalise_email(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def _check_email(value: str) -> str:
    from email_validator import EmailNotValidError, validate_email  # at the first address

    try:
        # test_environment: also accept RFC 2606 `.test` addresses, for test tooling and
        # staging accounts (nothing is ever delivered there). No DNS look-ups.
        checked = validate_email(value, check_deliverability=False, test_environment=True)
        return checked.normalized.lower()
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address: {exc}") from None


def _refuse_common(password: str) -> str:
    if is_common_password(password):
        raise ValueError("this password is too common; choose one that is harder to guess")
    return password


EmailAddress = Annotated[
    str,
    BeforeValidator(_normalise_email),
    Field(
        max_length=254,
        description="Trimmed and lower-cased",
        examples=["ana@example.com"],
        json_schema_extra={"format": "email"},
    ),
    OneLine,
    AfterValidator(_check_email),
]
NewPassword = Annotated[
    str,
    Field(
        min_length=PASSWORD_MIN,
        max_length=PASSWORD_MAX,
        description="8-128 characters, kept exactly as typed; common passwords are refused",
    ),
    NewSecret,
    AfterValidator(_refuse_common),
]
Password = Annotated[str, Field(min_length=1, max_length=PASSWORD_MAX), Secret]
Pin = Annotated[str, Field(pattern=r"^[0-9]{6}$", description="The 6-digit e-mailed PIN")]
JsonWebToken = Annotated[str, Field(min_length=1, max_length=4096), Secret]


class PinRequest(InputModel):
    email: EmailAddress


class SignupConfirmation(InputModel):
    email: EmailAddress
    password: NewPassword
    pin: Pin


class LoginRequest(InputModel):
    email: EmailAddress
    password: Password


class RefreshRequest(InputModel):
    refresh_token: JsonWebToken


class LogoutRequest(InputModel):
    """Which session to end: every one (`all`), a refresh token's, else the caller's own."""

    refresh_token: Omittable[JsonWebToken] = Field(None, description="End this token's session")
    all: StrictBool = Field(False, description="End every session, access tokens included")


class PasswordResetConfirmation(InputModel):
    email: EmailAddress
    pin: Pin
    new_password: NewPassword


class PasswordChange(InputModel):
    current_password: Password
    new_password: NewPassword


class AccountDeletion(InputModel):
    password: Password


class Message(OutputModel):
    message: str


class UserPublic(OutputModel):
    id: uuid.UUID
    email: str
    created_at: datetime


class TokenBundle(OutputModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int = Field(description="Seconds the access token is valid for")
    user: UserPublic
