"""The seed's two metrics, in one place: `diagnose_duration_ms` and `openai_tokens`.

Each is always a log line of the `api.metrics` logger (with `metric`, `metric_measurements`
and `metric_properties` attributes), so `func azure functionapp logstream` shows it. With
Application Insights configured (see `api.telemetry`) each is also a custom event (the
customEvents table: properties as customDimensions, figures as customMeasurements) and an
OpenTelemetry metric with the same dimensions (customMetrics): a histogram of turn durations
and a counter of tokens by `kind` (prompt / completion).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

from api import telemetry
from api.telemetry import Value

log = logging.getLogger("api.metrics")

ProviderCall = Literal["diagnosis", "title", "transcription", "sound"]


def diagnosis_turn(
    duration_ms: float,
    *,
    route: str,
    outcome: str,
    model: str,
    images: int,
    audio: bool,
    dtc_count: int,
) -> None:
    """One diagnosis turn, whatever its outcome (`ok` or the error code)."""
    properties: dict[str, Value] = {
        "route": route,
        "outcome": outcome,
        "model": model,
        "images": images,
        "audio": audio,
        "dtc_count": dtc_count,
    }
    _record("diagnose_duration_ms", {"duration_ms": duration_ms}, properties)
    telemetry.histogram("diagnose_duration_ms", duration_ms, unit="ms", attributes=properties)


def provider_reply(
    *, model: str, call: ProviderCall, prompt_tokens: int | None, completion_tokens: int | None
) -> None:
    """One reply of the AI provider and the tokens it billed (None: the reply did not say,
    e.g. a transcription billed by the second)."""
    properties: dict[str, Value] = {"model": model, "call": call}
    tokens = {"prompt": prompt_tokens, "completion": completion_tokens}
    measured: dict[str, float] = {
        f"{kind}_tokens": count for kind, count in tokens.items() if count is not None
    }
    _record("openai_tokens", measured, properties)
    for kind, count in tokens.items():
        if count is not None:
            telemetry.counter(
                "openai_tokens", count, unit="{token}", attributes={**properties, "kind": kind}
            )


def _record(name: str, measurements: Mapping[str, float], properties: Mapping[str, Value]) -> None:
    log.info(
        "metric %s %s",
        name,
        " ".join(f"{key}={value}" for key, value in {**measurements, **properties}.items()),
        extra={
            "metric": name,
            "metric_measurements": measurements,
            "metric_properties": properties,
        },
    )
    telemetry.event(name, measurements=measurements, properties=properties)
