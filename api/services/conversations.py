"""Stored diagnosis conversations, always scoped to their owner: another user's conversation
is answered exactly like one that does not exist."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.orm import Session, selectinload

from api.db import Reader
from api.errors import NotFoundError
from api.models import AttachmentBlob, ChatAttachment, ChatMessage, Conversation, User, utcnow
from api.schemas.diagnose import ConversationSummary
from api.services.listing import Listing, PagedQuery, page_of

if TYPE_CHECKING:
    from api.services.auth import Account

PREVIEW_CHARS = 120


def owned_conversation(
    *,
    session: Session,
    user: User,
    conversation_id: uuid.UUID,
    with_messages: bool = False,
    for_update: bool = False,
) -> Conversation:
    """The user's conversation (its messages loaded in order by one more statement when
    asked); another user's is "not found" like a missing one. `for_update` locks its row to
    the end of the transaction, for work that writes under it or deletes it."""
    query = select(Conversation).where(
        Conversation.id == conversation_id, Conversation.user_id == user.id
    )
    if with_messages:
        query = query.options(selectinload(Conversation.messages))
    if for_update:
        query = query.with_for_update()
    conversation = session.scalar(query)
    if conversation is None:
        raise NotFoundError("No such conversation")
    return conversation


def message_preview(content: dict[str, Any] | None) -> str | None:
    """A line of text for lists: the diagnosis summary, the question, or legacy text."""
    content = content or {}
    diagnosis = content.get("diagnosis")
    candidates = [
        diagnosis.get("summary") if isinstance(diagnosis, dict) else None,
        content.get("text"),
        content.get("answer"),
        content.get("content"),
    ]
    text = next((c for c in candidates if isinstance(c, str) and c.strip()), None)
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def list_conversations(
    *, reader: Reader, user: Account, limit: int, offset: int, vehicle_id: uuid.UUID | None
) -> Listing[ConversationSummary]:
    """The user's conversations, most recently active first."""
    rows, total = page_of(
        reader,
        _conversations_query(for_vehicle=vehicle_id is not None),
        limit=limit,
        offset=offset,
        values={"user_id": user.id, "vehicle_id": vehicle_id},
    )
    items = [
        ConversationSummary(
            id=id_,
            title=title,
            vehicle_id=vehicle,
            created_at=created_at,
            updated_at=updated_at,
            last_message_preview=message_preview(content),
            language=language,
        )
        for id_, title, vehicle, created_at, updated_at, language, content, _page_total in rows
    ]
    return Listing(items=items, total=total)


@functools.cache
def _conversations_query(*, for_vehicle: bool) -> PagedQuery:
    """`list_conversations`'s statements, built once (see PagedQuery), reading the columns
    a summary shows and its last message's content."""
    owned = [Conversation.user_id == bindparam("user_id")]
    if for_vehicle:
        owned.append(Conversation.vehicle_id == bindparam("vehicle_id"))
    last_content = (
        select(ChatMessage.content)
        .where(ChatMessage.conversation_id == Conversation.id)
        .order_by(ChatMessage.created_at.desc(), ChatMessage.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return PagedQuery.of(
        select(
            Conversation.id,
            Conversation.title,
            Conversation.vehicle_id,
            Conversation.created_at,
            Conversation.updated_at,
            Conversation.language,
            last_content,
        )
        .where(*owned)
        .order_by(Conversation.updated_at.desc(), Conversation.id)
    )


def get_conversation(*, session: Session, user: User, conversation_id: uuid.UUID) -> Conversation:
    """The conversation with its messages in order."""
    return owned_conversation(
        session=session, user=user, conversation_id=conversation_id, with_messages=True
    )


def rename_conversation(
    *, session: Session, user: User, conversation_id: uuid.UUID, title: str
) -> Conversation:
    conversation = get_conversation(session=session, user=user, conversation_id=conversation_id)
    conversation.title = title
    conversation.updated_at = utcnow()
    session.flush()
    return conversation


def delete_conversation(*, session: Session, user: User, conversation_id: uuid.UUID) -> None:
    """Delete it with its messages and attachments (the database cascades), and the bytes
    of every file no other message of the user's still carries.

    Locks are taken in the order a diagnosis turn takes them when it stores a file (the
    conversation, then the files), so the two never deadlock: a turn that is storing one of
    these files keeps it, since this waits for the turn and then sees its reference."""
    conversation = owned_conversation(
        session=session, user=user, conversation_id=conversation_id, for_update=True
    )
    carried = select(ChatAttachment.blob_id).where(
        ChatAttachment.conversation_id == conversation.id
    )
    files = session.scalars(
        select(AttachmentBlob.id).where(AttachmentBlob.id.in_(carried)).with_for_update()
    ).all()
    session.delete(conversation)
    session.flush()
    if files:
        session.execute(
            delete(AttachmentBlob).where(
                AttachmentBlob.id.in_(files),
                ~exists().where(ChatAttachment.blob_id == AttachmentBlob.id),
            )
        )


@dataclass(frozen=True)
class StoredFile:
    """An attachment's bytes and what they are."""

    id: uuid.UUID
    kind: str
    mime_type: str
    data: bytes


def attachment_file(
    *, session: Session, user: User, conversation_id: uuid.UUID, attachment_id: uuid.UUID
) -> StoredFile:
    """One attachment of the user's conversation, bytes included, in one statement (only the
    columns needed: the bytes are read once, into the result); anyone else's, or one of
    another conversation, is "not found"."""
    row = session.execute(
        select(
            ChatAttachment.id, ChatAttachment.kind, ChatAttachment.mime_type, AttachmentBlob.data
        )
        .join(AttachmentBlob, AttachmentBlob.id == ChatAttachment.blob_id)
        .join(Conversation, Conversation.id == ChatAttachment.conversation_id)
        .where(
            ChatAttachment.id == attachment_id,
            ChatAttachment.conversation_id == conversation_id,
            Conversation.user_id == user.id,
        )
    ).one_or_none()
    if row is None:
        raise NotFoundError("No such attachment")
    return StoredFile(*row)
