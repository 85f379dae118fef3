"""One small metrics interface. Today a metric is a structured log record (Application
Insights collects the worker's logs); an exporter can replace `record` later without
touching the callers."""

from __future__ import annotations

import logging

log = logging.getLogger("api.metrics")


def record(name: str, value: float, **dimensions: str | int | None) -> None:
    """Record one measurement, e.g. `record("openai_tokens", 812, kind="prompt")`."""
    dims = {key: dim for key, dim in dimensions.items() if dim is not None}
    log.info(
        "metric %s=%s %s",
        name,
        value,
        " ".join(f"{key}={dim}" for key, dim in sorted(dims.items())),
        extra={"metric": name, "metric_value": value, "metric_dimensions": dims},
    )
