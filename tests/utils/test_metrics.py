"""The seed's two metrics as log lines (what `logstream` shows without Application
Insights); their custom events and OpenTelemetry figures are in tests/telemetry."""

from __future__ import annotations

import logging

import pytest

from api.utils import metrics


def metric_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == "api.metrics"]


def test_a_diagnosis_turn_is_one_line_with_its_duration_and_properties(caplog):
    with caplog.at_level(logging.INFO, logger="api.metrics"):
        metrics.diagnosis_turn(
            812.5, route="diagnose2", outcome="ok", model="m", images=2, audio=True, dtc_count=1
        )
    (record,) = metric_records(caplog)
    assert record.getMessage() == (
        "metric diagnose_duration_ms duration_ms=812.5 route=diagnose2 outcome=ok model=m"
        " images=2 audio=True dtc_count=1"
    )
    assert record.__dict__["metric_measurements"] == {"duration_ms": 812.5}


def test_tokens_a_reply_did_not_report_are_left_out_not_zero(caplog):
    with caplog.at_level(logging.INFO, logger="api.metrics"):
        metrics.provider_reply(
            model="m", call="transcription", prompt_tokens=12, completion_tokens=None
        )
    (record,) = metric_records(caplog)
    assert record.__dict__["metric"] == "openai_tokens"
    assert record.__dict__["metric_measurements"] == {"prompt_tokens": 12}
    assert record.__dict__["metric_properties"] == {"model": "m", "call": "transcription"}
