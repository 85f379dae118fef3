"""One time budget per turn (DIAGNOSE_DEADLINE_S): slow calls are cut, no call starts
without time to answer, the title is skipped when time is short, and retries wait what
the provider asks only when that still fits."""

from __future__ import annotations

import importlib
import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest
from sqlalchemy.orm import Session

from api.models import ChatAttachment, Conversation, DiagnosisUsage, User
from api.utils.deadline import Deadline
from tests.factories import (
    PNG,
    add_conversation,
    add_message,
    auth_headers,
    b64,
    count,
    stored_turns,
)
from tests.fake_openai import (
    DIAGNOSIS,
    FakeOpenAI,
    Slow,
    completion,
    error_response,
    trickled,
)
from tests.harness import changed_settings


@pytest.fixture
def turn_budget(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Shrink the next turns' time budget: DIAGNOSE_DEADLINE_S cannot go below 10 s, and no
    test should wait that long. The SDK is imported first: its first import (about a second
    on a cold, busy machine) must not eat the budget under test."""
    importlib.import_module("openai")

    def shrink(seconds: float) -> None:
        monkeypatch.setattr(
            Deadline, "after", classmethod(lambda cls, _: cls(time.monotonic() + seconds))
        )

    return shrink


# Past the budget, within OPENAI_TIMEOUT_S (5 s): a reply that comes late, and one that
# trickles in (a byte now and then restarts the SDK's per-read timeout: the whole would
# take about 5 s, each read under 0.1 s).
LATE_REPLIES: dict[str, Callable[[], object]] = {
    "slow": lambda: Slow(2.0),
    "trickling": lambda: trickled(completion(json.dumps(DIAGNOSIS)), pause_s=0.1),
}


@pytest.mark.parametrize("reply", LATE_REPLIES.values(), ids=LATE_REPLIES.keys())
def test_the_turn_budget_cuts_a_late_reply(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    turn_budget: Callable[[float], None],
    reply: Callable[[], object],
) -> None:
    turn_budget(1.5)
    openai.replies = [reply()]
    response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
    assert response.status_code == 504, response.text
    assert response.json()["code"] == "upstream_timeout"
    (timeout,) = openai.chat_timeouts
    assert 1.0 <= timeout <= 1.5  # what was left of the budget, not OPENAI_TIMEOUT_S
    assert count(session, Conversation, Conversation.user_id == user.id) == 0
    assert count(session, DiagnosisUsage) == 0


def test_no_call_starts_once_the_budget_is_spent(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    conversation = add_conversation(session, user.id, title="Existing")
    add_message(session, conversation, "user", {"text": "before"}, 5)
    add_message(session, conversation, "assistant", {"answer": "earlier"}, 4)
    turn_budget(1.5)
    # The first reply breaks the schema after 0.6 s: less than a second is left for the retry.
    openai.replies = [Slow(0.6, "not json")]
    response = client.post(
        "/diagnose2",
        headers=auth_headers(user),
        json={"q": "again", "session_id": str(conversation.id), "images": [b64(PNG)]},
    )
    assert response.status_code == 504
    assert response.json()["code"] == "upstream_timeout"
    assert "ran out of time" in response.json()["detail"]
    assert len(openai.chat_bodies) == 1
    assert [m.content for m in stored_turns(session, conversation.id)] == [
        {"text": "before"},
        {"answer": "earlier"},
    ]
    assert count(session, ChatAttachment) == 0
    assert count(session, DiagnosisUsage) == 0


def test_the_title_call_is_skipped_when_little_time_is_left(
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    turn_budget(3.0)
    response = client.post(
        "/diagnose2", headers=auth_headers(user), json={"q": "Squeal when braking"}
    )
    assert response.status_code == 200, response.text
    assert len(openai.chat_bodies) == 1  # the diagnosis only
    conversation = session.get(Conversation, uuid.UUID(response.json()["session_id"]))
    assert conversation.title == "Squeal when braking"
    assert count(session, DiagnosisUsage, DiagnosisUsage.user_id == user.id) == 1


def test_a_retry_waits_what_the_provider_asks_when_it_fits(
    client: httpx.Client, openai: FakeOpenAI, user: User
) -> None:
    busy = error_response(429)
    busy.headers["retry-after-ms"] = "700"
    openai.replies = [busy]
    with changed_settings(OPENAI_MAX_RETRIES="1"):
        started = time.monotonic()
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
    assert response.status_code == 200
    assert len(openai.diagnosis_bodies) == 2
    assert time.monotonic() - started >= 0.7  # not the 0.5 s backoff alone


def test_a_retry_after_past_the_budget_fails_at_once(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    turn_budget(3.0)
    busy = error_response(429)
    busy.headers["Retry-After"] = "100"  # the SDK itself would sleep 100 s
    openai.replies = [busy]
    with changed_settings(OPENAI_MAX_RETRIES="2"):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_rate_limited"
    assert len(openai.diagnosis_bodies) == 1


def test_no_retry_when_it_would_not_fit_the_budget(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    turn_budget: Callable[[float], None],
) -> None:
    turn_budget(1.4)  # a pause (0.5 s) and another attempt (at least 1 s) do not fit
    openai.replies = [error_response(500)]
    with changed_settings(OPENAI_MAX_RETRIES="2"):
        response = client.post("/diagnose2", headers=auth_headers(user), json={"q": "a"})
    assert response.status_code == 502
    assert len(openai.diagnosis_bodies) == 1
