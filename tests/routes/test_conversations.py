"""GET/PATCH/DELETE /api/conversations: owner only, another user's id is a 404."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import AttachmentBlob, ChatAttachment, ChatMessage, Conversation, User, Vehicle
from tests.factories import JPEG, PNG, add_image, auth_headers, create_user, stored_turns

NOW = datetime.now(UTC)


def conversation_with_turn(
    session: Session, user: User, *, title: str, hours_ago: int, vehicle: Vehicle | None = None
) -> Conversation:
    conversation = Conversation(
        user_id=user.id,
        title=title,
        vehicle_id=vehicle.id if vehicle else None,
        created_at=NOW - timedelta(hours=hours_ago),
        updated_at=NOW - timedelta(hours=hours_ago),
    )
    session.add(conversation)
    session.flush()
    question = ChatMessage(
        conversation_id=conversation.id,
        role="user",
        content={"text": f"{title}?"},
        created_at=NOW - timedelta(hours=hours_ago),
    )
    answer = ChatMessage(
        conversation_id=conversation.id,
        role="assistant",
        content={"answer": "long markdown", "diagnosis": {"summary": f"About {title}"}},
        created_at=NOW - timedelta(hours=hours_ago) + timedelta(seconds=5),
    )
    session.add_all([question, answer])
    session.flush()
    add_image(session, question)
    session.flush()
    return conversation


def test_list_is_newest_activity_first_with_previews_and_filters(
    client: httpx.Client, session: Session
) -> None:
    user = create_user(session)
    car = Vehicle(user_id=user.id, make="VW", model="Golf", year="2019")
    session.add(car)
    session.flush()
    older = conversation_with_turn(session, user, title="Brakes", hours_ago=5)
    newer = conversation_with_turn(session, user, title="Clutch", hours_ago=1, vehicle=car)
    legacy = Conversation(user_id=user.id, created_at=NOW - timedelta(hours=3))
    legacy.updated_at = legacy.created_at
    session.add(legacy)
    session.flush()
    session.add(
        ChatMessage(conversation_id=legacy.id, role="user", content={"content": "Old  text"})
    )
    conversation_with_turn(session, create_user(session), title="Not mine", hours_ago=0)

    body = client.get("/conversations", headers=auth_headers(user)).json()
    assert body["total"] == 3
    assert [item["id"] for item in body["items"]] == [str(newer.id), str(legacy.id), str(older.id)]
    first = body["items"][0]
    assert first["title"] == "Clutch"
    assert first["vehicle_id"] == str(car.id)
    assert first["last_message_preview"] == "About Clutch"
    assert {"created_at", "updated_at"} <= first.keys()
    assert body["items"][1]["last_message_preview"] == "Old text"

    page = client.get(
        "/conversations", headers=auth_headers(user), params={"limit": 1, "offset": 1}
    )
    assert [i["id"] for i in page.json()["items"]] == [str(legacy.id)]
    assert page.json()["total"] == 3
    filtered = client.get(
        "/conversations", headers=auth_headers(user), params={"vehicle_id": str(car.id)}
    ).json()
    assert (filtered["total"], filtered["items"][0]["id"]) == (1, str(newer.id))


def test_get_shows_messages_in_order(client: httpx.Client, session: Session) -> None:
    user = create_user(session)
    conversation = conversation_with_turn(session, user, title="Brakes", hours_ago=2)
    response = client.get(f"/conversations/{conversation.id}", headers=auth_headers(user))
    assert response.status_code == 200
    body = response.json()
    assert body["title"] == "Brakes"
    assert [m["role"] for m in body["messages"]] == ["user", "assistant"]
    assert body["messages"][0]["content"] == {"text": "Brakes?"}
    assert set(body["messages"][0]) == {"id", "role", "content", "created_at"}


def test_patch_renames(client: httpx.Client, session: Session) -> None:
    user = create_user(session)
    conversation = conversation_with_turn(session, user, title="Brakes", hours_ago=2)
    url = f"/conversations/{conversation.id}"
    response = client.patch(url, headers=auth_headers(user), json={"title": "  Rear brakes "})
    assert response.status_code == 200
    assert response.json()["title"] == "Rear brakes"
    assert client.get(url, headers=auth_headers(user)).json()["title"] == "Rear brakes"
    blank = client.patch(url, headers=auth_headers(user), json={"title": "   "})
    assert blank.status_code == 422
    extra = client.patch(url, headers=auth_headers(user), json={"title": "x", "user_id": "y"})
    assert extra.status_code == 422


def test_delete_removes_messages_and_attachments(client: httpx.Client, session: Session) -> None:
    user = create_user(session)
    conversation = conversation_with_turn(session, user, title="Brakes", hours_ago=2)
    conversation_id = conversation.id
    url = f"/conversations/{conversation_id}"
    response = client.delete(url, headers=auth_headers(user))
    assert response.status_code == 204
    assert client.get(url, headers=auth_headers(user)).status_code == 404
    session.expire_all()
    for model in (ChatMessage, ChatAttachment):
        remaining = session.scalar(
            select(func.count()).select_from(model).where(model.conversation_id == conversation_id)
        )
        assert remaining == 0
    assert session.scalar(select(func.count()).select_from(AttachmentBlob)) == 0  # the bytes


def test_delete_keeps_the_bytes_of_a_file_another_conversation_carries(
    client: httpx.Client, session: Session
) -> None:
    user = create_user(session)
    kept = conversation_with_turn(session, user, title="Brakes", hours_ago=3)
    deleted = conversation_with_turn(session, user, title="Brakes again", hours_ago=1)
    question = stored_turns(session, deleted.id)[0]
    add_image(session, question, JPEG)  # only in the conversation deleted
    session.flush()

    response = client.delete(f"/conversations/{deleted.id}", headers=auth_headers(user))

    assert response.status_code == 204
    session.expire_all()
    (attachment,) = session.scalars(select(ChatAttachment)).all()
    assert attachment.conversation_id == kept.id
    blob = session.get(AttachmentBlob, attachment.blob_id)
    assert blob is not None
    assert blob.data == PNG
    assert session.scalar(select(func.count()).select_from(AttachmentBlob)) == 1


def test_another_users_conversation_is_404_and_unchanged(
    client: httpx.Client, session: Session
) -> None:
    owner, intruder = create_user(session), create_user(session)
    conversation = conversation_with_turn(session, owner, title="Mine", hours_ago=1)
    url = f"/conversations/{conversation.id}"
    headers = auth_headers(intruder)
    missing = client.get(f"/conversations/{uuid.uuid4()}", headers=headers)
    for response in (
        client.get(url, headers=headers),
        client.patch(url, headers=headers, json={"title": "Stolen"}),
        client.delete(url, headers=headers),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == missing.json()["detail"]
    assert client.get("/conversations", headers=headers).json() == {"items": [], "total": 0}
    owners_view = client.get(url, headers=auth_headers(owner)).json()
    assert owners_view["title"] == "Mine"
    assert len(owners_view["messages"]) == 2


def test_conversations_need_a_token(client: httpx.Client) -> None:
    assert client.get("/conversations").status_code == 401
    assert client.delete(f"/conversations/{uuid.uuid4()}").status_code == 401
