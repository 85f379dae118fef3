"""What the telemetry pipeline exported, read from the OpenTelemetry SDK's in-memory
exporters after a deterministic flush (fixtures `exported`, `start_exporting`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from api.telemetry.pipeline import EVENT_MEASUREMENTS, EVENT_NAME, Exporters, Pipeline


def in_memory() -> Exporters:
    return Exporters(
        spans=InMemorySpanExporter(),
        logs=InMemoryLogRecordExporter(),
        metrics=InMemoryMetricReader(),
    )


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
                measurements = json.loads(str(attributes.pop(EVENT_MEASUREMENTS)))
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
