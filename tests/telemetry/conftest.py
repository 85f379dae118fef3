"""The telemetry pipeline with the OpenTelemetry SDK's in-memory exporters: what would be
sent to Application Insights, read back after a deterministic flush."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api import db, telemetry
from api.telemetry.pipeline import EVENT_MEASUREMENTS, EVENT_NAME, Exporters, Pipeline


@dataclass
class Exported:
    """Everything the running pipeline exported so far (each read flushes first)."""

    pipeline: Pipeline
    exporters: Exporters

    @property
    def spans(self) -> list[ReadableSpan]:
        self.pipeline.flush()
        assert isinstance(self.exporters.spans, InMemorySpanExporter)
        return list(self.exporters.spans.get_finished_spans())

    @property
    def logs(self) -> list[ReadableLogRecord]:
        self.pipeline.flush()
        assert isinstance(self.exporters.logs, InMemoryLogRecordExporter)
        return list(self.exporters.logs.get_finished_logs())

    def events(self, name: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """The custom events called `name`: (properties, measurements) each."""
        found = []
        for log in self.logs:
            attributes = dict(log.log_record.attributes or {})
            if attributes.pop(EVENT_NAME, None) == name:
                measurements = json.loads(attributes.pop(EVENT_MEASUREMENTS))
                found.append((attributes, measurements))
        return found

    def metric_points(self, name: str) -> list[Any]:
        """The data points of the metric `name` collected so far."""
        assert isinstance(self.exporters.metrics, InMemoryMetricReader)
        data = self.exporters.metrics.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


@pytest.fixture
def start_exporting(database_uri: str) -> Iterator[Callable[[], Exported]]:
    """Start a pipeline into in-memory exporters (after any settings the test changes).

    The database engine is made afresh under the pipeline (so its statements are traced),
    and again afterwards, untraced. Ask for this before `client`."""

    def start() -> Exported:
        telemetry.stop()
        exporters = Exporters(
            spans=InMemorySpanExporter(),
            logs=InMemoryLogRecordExporter(),
            metrics=InMemoryMetricReader(),
        )
        pipeline = telemetry.start(exporters)
        assert pipeline is not None
        db.dispose_engine()
        return Exported(pipeline, exporters)

    yield start
    telemetry.stop()
    db.dispose_engine()


@pytest.fixture
def exported(start_exporting: Callable[[], Exported]) -> Exported:
    return start_exporting()
