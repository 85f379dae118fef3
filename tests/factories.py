"""Test data: rows arranged through the models (not through the API), accounts signed up
through the API, small media samples, and rows read back for assertions."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session, object_session

from api.endpoints import Operation
from api.models import AttachmentBlob, Base, ChatAttachment, ChatMessage, Conversation, User
from api.services.auth import start_session
from api.utils.hashing import hash_password
from tests.outbox import Outbox

PASSWORD = "Correct horse battery staple 42"

# The smallest files the media sniffing accepts as each type.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(40))
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40)
OGG = b"OggS\x00\x02" + bytes(40)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- accounts ---------------------------------------------------------------------------------


def new_email() -> str:
    return f"driver-{uuid.uuid4().hex[:10]}@example.com"


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
    """A Bearer header with a fresh access token for `user` (at its current token version),
    in a session of its own, stored through the user's database session: an access token
    works only while its session lives."""
    session = object_session(user)
    assert session is not None, "auth_headers needs a user attached to a session"
    return bearer(start_session(session=session, user=user).access_token)


def example_path(op: Operation) -> str:
    """The operation's path (under /api) with a well-formed value for each parameter."""
    values = {
        name: str(uuid.uuid4()) if declared is uuid.UUID else "P0420"
        for name, declared in op.path_params.items()
    }
    return "/" + op.route.format(**values)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sign_up(
    client: httpx.Client, outbox: Outbox, email: str | None = None, password: str = PASSWORD
) -> dict[str, Any]:
    """Sign a new user up through the API; returns the token bundle."""
    email = email or new_email()
    assert client.post("/request_pin", json={"email": email}).status_code == 202
    pin = outbox.pin_for(email)
    response = client.post(
        "/confirm_signup", json={"email": email, "password": password, "pin": pin}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- conversations ----------------------------------------------------------------------------


def add_conversation(session: Session, user_id: uuid.UUID, **fields: Any) -> Conversation:
    """A conversation of the user's (title, vehicle_id, ... as given), stored."""
    conversation = Conversation(user_id=user_id, **fields)
    session.add(conversation)
    session.flush()
    return conversation


def add_message(
    session: Session,
    conversation: Conversation,
    role: str | None,
    content: dict[str, Any],
    minutes_ago: int,
) -> ChatMessage:
    message = ChatMessage(
        conversation_id=conversation.id,
        role=role,
        content=content,
        created_at=datetime.now(UTC) - timedelta(minutes=minutes_ago),
    )
    session.add(message)
    session.flush()
    return message


def add_image(session: Session, message: ChatMessage, data: bytes = PNG) -> ChatAttachment:
    """An image attached to `message`, its bytes stored once for the conversation's owner,
    as a diagnosis turn stores them."""
    conversation = session.get(Conversation, message.conversation_id)
    assert conversation is not None
    assert conversation.user_id is not None
    digest = hashlib.sha256(data).hexdigest()
    blob = session.scalar(
        select(AttachmentBlob).where(
            AttachmentBlob.user_id == conversation.user_id, AttachmentBlob.sha256 == digest
        )
    ) or AttachmentBlob(user_id=conversation.user_id, sha256=digest, data=data)
    session.add(blob)
    session.flush()
    attachment = ChatAttachment(
        conversation_id=conversation.id,
        message_id=message.id,
        blob_id=blob.id,
        kind="image",
        mime_type="image/png",
        size_bytes=len(data),
        sha256=digest,
    )
    session.add(attachment)
    return attachment


# --- reading back -----------------------------------------------------------------------------


def count(session: Session, model: type[Base], *where: ColumnElement[bool]) -> int:
    """Rows of `model` now (after what requests committed), optionally filtered."""
    session.expire_all()
    return session.scalar(select(func.count()).select_from(model).where(*where)) or 0


def stored_turns(session: Session, conversation_id: uuid.UUID) -> list[ChatMessage]:
    """A conversation's messages as stored now, oldest first."""
    session.expire_all()
    return list(
        session.scalars(
            select(ChatMessage)
            .where(ChatMessage.conversation_id == conversation_id)
            .order_by(ChatMessage.created_at, ChatMessage.id)
        )
    )
