"""What a turn records as log lines: its duration, outcome and what was sent
(`diagnose_duration_ms`) and every provider reply's tokens (`openai_tokens`), failed turns
included. What telemetry exports of them: tests/telemetry."""

from __future__ import annotations

import logging

import httpx
import pytest

from api.models import User
from tests.factories import PNG, WAV, auth_headers, b64
from tests.fake_openai import FakeOpenAI, error_response
from tests.harness import changed_settings


def recorded_metrics(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict, dict]]:
    return [
        (vars(r)["metric"], vars(r)["metric_measurements"], vars(r)["metric_properties"])
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
            "/diagnose2",
            headers=auth_headers(user),
            json={"q": "a", "audio": b64(WAV), "images": [b64(PNG)], "dtc_codes": ["P0420"]},
        )
    assert response.status_code == 200
    recorded = recorded_metrics(caplog)
    (duration,) = [m for m in recorded if m[0] == "diagnose_duration_ms"]
    assert duration[1]["duration_ms"] > 0
    assert duration[2] == {
        "route": "v2",
        "outcome": "ok",
        "model": "gpt-4o-mini",
        "images": 1,
        "audio": True,
        "dtc_count": 1,
    }
    chat = "gpt-4o-mini-2024-07-18"
    tokens = [(m[1], m[2]) for m in recorded if m[0] == "openai_tokens"]
    billed = {"prompt_tokens": 321, "completion_tokens": 54}
    assert tokens == [
        (
            {"prompt_tokens": 80, "completion_tokens": 12},
            {"model": "gpt-4o-mini-transcribe", "call": "transcription"},
        ),
        (billed, {"model": "gpt-4o-audio-preview", "call": "sound"}),
        (billed, {"model": chat, "call": "diagnosis"}),
        (billed, {"model": chat, "call": "diagnosis"}),
        (billed, {"model": chat, "call": "title"}),
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
    assert duration[2]["route"] == "legacy"
    assert duration[2]["outcome"] == outcome
    calls = [m[2]["call"] for m in recorded if m[0] == "openai_tokens"]
    assert calls == ["diagnosis"] * diagnosis_calls


def test_a_replayed_turn_is_recorded_as_replayed_with_no_tokens(
    client: httpx.Client, openai: FakeOpenAI, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    headers = auth_headers(user) | {"Idempotency-Key": "metrics-key-0001"}
    assert client.post("/diagnose2", headers=headers, json={"q": "a"}).status_code == 200
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="api.metrics"):
        replay = client.post("/diagnose2", headers=headers, json={"q": "a"})
    assert replay.headers["Idempotent-Replayed"] == "true"
    ((name, _, properties),) = recorded_metrics(caplog)  # no openai_tokens: no provider call
    assert (name, properties["outcome"]) == ("diagnose_duration_ms", "replayed")
