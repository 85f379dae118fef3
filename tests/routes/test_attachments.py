"""Downloading a stored photo or recording through the local host: the owner gets the very
bytes sent, typed as sniffed when they arrived, as a download that browsers will not
re-sniff; anyone else, or the wrong conversation, gets 404."""

from __future__ import annotations

import os
import uuid

import httpx
import pytest
from sqlalchemy.orm import Session

from api.models import User
from tests.factories import (
    JPEG,
    PNG,
    WAV,
    add_conversation,
    add_image,
    add_message,
    auth_headers,
    b64,
    create_user,
)
from tests.fake_openai import FakeOpenAI

PHOTO = JPEG + os.urandom(2 * 1024 * 1024)  # a 2 MB photo, every byte of it random


def turn_with_files(client: httpx.Client, user: User) -> tuple[str, list[dict]]:
    """A turn sent as a form (the photo as a file part) with a recording in Base64."""
    response = client.post(
        "/diagnose2",
        data={"q": "Here is the exhaust", "audio": b64(WAV)},
        files={"images": ("exhaust.jpg", PHOTO, "image/png")},  # declared PNG, really JPEG
        headers=auth_headers(user),
    )
    assert response.status_code == 200, response.text
    session_id = response.json()["session_id"]
    shown = client.get(f"/conversations/{session_id}", headers=auth_headers(user)).json()
    return session_id, shown["messages"][0]["content"]["attachments"]


def test_a_photo_sent_in_a_turn_downloads_byte_identical_for_its_owner(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    session_id, attachments = turn_with_files(client, user)
    assert [(a["kind"], a["mime_type"]) for a in attachments] == [
        ("image", "image/jpeg"),
        ("audio", "audio/wav"),
    ]
    photo, recording = attachments

    got = client.get(
        f"/conversations/{session_id}/attachments/{photo['id']}", headers=auth_headers(user)
    )
    assert got.status_code == 200
    assert got.content == PHOTO
    assert got.headers["Content-Type"] == "image/jpeg"  # as sniffed, not as declared
    assert got.headers["Content-Disposition"] == (
        f'attachment; filename="axly-image-{photo["id"]}.jpg"'
    )
    assert got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Cache-Control"] == "private, max-age=86400"
    assert "Content-Disposition" in got.headers["Access-Control-Expose-Headers"]

    heard = client.get(
        f"/conversations/{session_id}/attachments/{recording['id']}", headers=auth_headers(user)
    )
    assert (heard.content, heard.headers["Content-Type"]) == (WAV, "audio/wav")
    assert heard.headers["Content-Disposition"].endswith('.wav"')


def test_anyone_else_gets_404_exactly_as_for_a_missing_attachment(
    client: httpx.Client, openai: FakeOpenAI, session: Session, user: User
) -> None:
    session_id, (photo, _) = turn_with_files(client, user)
    url = f"/conversations/{session_id}/attachments/{photo['id']}"
    stranger = create_user(session)

    answers = [
        client.get(url, headers=auth_headers(stranger)),
        client.get(
            f"/conversations/{session_id}/attachments/{uuid.uuid4()}", headers=auth_headers(user)
        ),
        client.get(
            f"/conversations/{session_id}/attachments/not-an-id", headers=auth_headers(user)
        ),
    ]
    for answer in answers:
        assert answer.status_code == 404
        assert answer.headers["Content-Type"] == "application/problem+json"
    assert answers[0].json()["detail"] == answers[1].json()["detail"] == "No such attachment"
    assert client.get(url).status_code == 401


def test_an_attachment_is_only_found_under_its_own_conversation(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    session_id, (photo, _) = turn_with_files(client, user)
    other_id, _ = turn_with_files(client, user)  # the owner's, but not the photo's
    for conversation, status in ((session_id, 200), (other_id, 404)):
        got = client.get(
            f"/conversations/{conversation}/attachments/{photo['id']}", headers=auth_headers(user)
        )
        assert got.status_code == status


def test_attachments_stored_before_this_route_download_too(
    client: httpx.Client, session: Session, user: User
) -> None:
    conversation = add_conversation(session, user.id, title="From the last release")
    message = add_message(session, conversation, "user", {"text": "old"}, 30)
    attachment = add_image(session, message, data=PNG)
    session.flush()
    got = client.get(
        f"/conversations/{conversation.id}/attachments/{attachment.id}",
        headers=auth_headers(user),
    )
    assert (got.status_code, got.content, got.headers["Content-Type"]) == (200, PNG, "image/png")


def test_a_deleted_conversations_files_are_gone(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    session_id, (photo, _) = turn_with_files(client, user)
    assert (
        client.delete(f"/conversations/{session_id}", headers=auth_headers(user)).status_code == 204
    )
    gone = client.get(
        f"/conversations/{session_id}/attachments/{photo['id']}", headers=auth_headers(user)
    )
    assert gone.status_code == 404


@pytest.mark.parametrize("sent", [PNG, JPEG])
def test_a_json_turn_lists_and_serves_its_images_too(
    client: httpx.Client, openai: FakeOpenAI, user: User, sent: bytes
) -> None:
    response = client.post(
        "/diagnose2", json={"q": "Look", "images": [b64(sent)]}, headers=auth_headers(user)
    )
    session_id = response.json()["session_id"]
    shown = client.get(f"/conversations/{session_id}", headers=auth_headers(user)).json()
    (photo,) = shown["messages"][0]["content"]["attachments"]
    got = client.get(
        f"/conversations/{session_id}/attachments/{photo['id']}", headers=auth_headers(user)
    )
    assert got.content == sent
