"""What a turn records: its duration and outcome (`diagnose_duration_ms`) and every provider
call's tokens (`openai_tokens`), failed turns included."""

from __future__ import annotations

import logging

import httpx
import pytest

from api.models import User
from tests.factories import WAV, auth_headers, b64
from tests.fake_openai import FakeOpenAI, error_response
from tests.harness import changed_settings


def recorded_metrics(caplog: pytest.LogCaptureFixture) -> list[tuple[str, float, dict]]:
    return [
        (vars(r)["metric"], vars(r)["metric_value"], vars(r)["metric_dimensions"])
        for r in caplog.records
        if r.name == "api.metrics"
    ]


def test_duration_and_every_calls_tokens_are_recorded(
    client: httpx.Client, openai: FakeOpenAI, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    openai.replies = ["{not json"]  # the schema retry is paid for too
    with (
        changed_settings(OPENAI_AUDIO_MODEL="gpt-4o-audio-preview"),
        caplog.at_level(logging.INFO, logger="api.metrics"),
    ):
        response = client.post(
            "/diagnose2", headers=auth_headers(user), json={"q": "a", "audio": b64(WAV)}
        )
    assert response.status_code == 200
    recorded = recorded_metrics(caplog)
    (duration,) = [m for m in recorded if m[0] == "diagnose_duration_ms"]
    assert duration[1] > 0
    assert duration[2] == {"route": "v2", "outcome": "ok"}
    chat = "gpt-4o-mini-2024-07-18"
    tokens = [(m[1], m[2]) for m in recorded if m[0] == "openai_tokens"]
    assert tokens == [
        (80, {"kind": "prompt", "model": "gpt-4o-mini-transcribe", "call": "transcription"}),
        (12, {"kind": "completion", "model": "gpt-4o-mini-transcribe", "call": "transcription"}),
        (321, {"kind": "prompt", "model": "gpt-4o-audio-preview", "call": "sound analysis"}),
        (54, {"kind": "completion", "model": "gpt-4o-audio-preview", "call": "sound analysis"}),
        (321, {"kind": "prompt", "model": chat, "call": "diagnosis"}),
        (54, {"kind": "completion", "model": chat, "call": "diagnosis"}),
        (321, {"kind": "prompt", "model": chat, "call": "diagnosis"}),
        (54, {"kind": "completion", "model": chat, "call": "diagnosis"}),
        (321, {"kind": "prompt", "model": chat, "call": "title"}),
        (54, {"kind": "completion", "model": chat, "call": "title"}),
    ]


@pytest.mark.parametrize(
    ("reply", "outcome", "diagnosis_calls"),
    [(error_response(500), "upstream_error", 0), ("not json", "upstream_invalid_reply", 2)],
)
def test_failed_turns_record_their_duration_outcome_and_paid_tokens(
    client: httpx.Client,
    openai: FakeOpenAI,
    user: User,
    caplog: pytest.LogCaptureFixture,
    reply,
    outcome: str,
    diagnosis_calls: int,
) -> None:
    openai.replies = [reply, reply]
    with caplog.at_level(logging.INFO, logger="api.metrics"):
        response = client.get("/Diagnose", headers=auth_headers(user), params={"q": "a"})
    assert response.status_code == 502
    recorded = recorded_metrics(caplog)
    (duration,) = [m for m in recorded if m[0] == "diagnose_duration_ms"]
    assert duration[2] == {"route": "legacy", "outcome": outcome}
    calls = [m[2]["call"] for m in recorded if m[0] == "openai_tokens"]
    assert calls == ["diagnosis"] * 2 * diagnosis_calls
