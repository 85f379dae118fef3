"""The OpenTelemetry pipeline behind `api.telemetry`, imported only when telemetry is on.

Built from `azure-monitor-opentelemetry-exporter` and the OpenTelemetry SDK rather than the
`azure-monitor-opentelemetry` distro: the distro costs more to import and set up and brings
instrumentations this app has no use for (figures in README, Observability).

- Providers of our own, never the process-wide (global) ones: the Functions worker sets up
  the distro globally when PYTHON_ENABLE_OPENTELEMETRY is on, and tests start and stop
  pipelines repeatedly.
- Requests: one SERVER span per invocation, child of the host's invocation. The host passes
  its W3C trace context with every invocation (ScriptInvocationContextExtensions
  .GetRpcTraceContext in azure-functions-host); the Python worker hands it to a function
  that takes a `context` parameter as `context.trace_context.trace_parent` / `.trace_state`
  (dispatcher `_get_context` in azure-functions-python-worker, whose own OpenTelemetry
  support extracts it the same way: `configure_opentelemetry`).
- Dependencies: the psycopg (PostgreSQL), httpx2 (the AI provider, through the openai SDK)
  and urllib (SendGrid, through python-http-client) instrumentations; SMTP by `dependency`.
  (OpenTelemetry's SQLAlchemy instrumentation refuses SQLAlchemy 2.1; psycopg's traces the
  same statements one level lower, in connections opened after it starts.)
- The request id (X-Request-ID) is an attribute of every span, log record and event, so it
  becomes a custom dimension of every item.
- Custom events are log records with `microsoft.custom_event.name` (and their figures as JSON
  in `microsoft.custom_measurements`): the exporter sends such records as EventData, i.e. the
  customEvents table (`_log_data_is_event` and `_filter_custom_measurements` in
  azure-monitor-opentelemetry-exporter 1.0.0b58).
- Sampling applies to spans only (ApplicationInsightsSampler, the Application Insights SDKs'
  algorithm, keyed on the trace id); log records (traces, exceptions, custom events) and
  metrics are never sampled.
- Privacy: no body, header or query string is ever recorded; on the way out, query strings
  are cut from URLs, e-mail addresses masked in any text, exception events dropped from spans
  (exceptions are sent once, as the log records that report them) and log records marked
  `private` left out.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import azure.functions as func
from azure.monitor.opentelemetry.exporter import ApplicationInsightsSampler
from opentelemetry._logs import SeverityNumber
from opentelemetry.context import Context
from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.urllib import URLLibInstrumentor
from opentelemetry.metrics import Counter, Histogram, NoOpMeterProvider
from opentelemetry.sdk._logs import LoggerProvider, LogRecordProcessor, ReadWriteLogRecord
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from api.utils.http import REQUEST_ID_HEADER, current_request_id

REQUEST_ID = "request_id"  # the custom dimension naming the X-Request-ID
EVENT_NAME = "microsoft.custom_event.name"
EVENT_MEASUREMENTS = "microsoft.custom_measurements"
EXPORTED_LOGGER = "api"  # our own loggers; libraries' records stay in the worker's log
# Records of these loggers are not exported as traces: each is already a custom event.
NOT_EXPORTED_LOGGERS = frozenset({"api.metrics"})
URL_ATTRIBUTES = frozenset({"url.full", "http.url", "http.target"})
_EMAIL = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
_TRACE_CONTEXT = TraceContextTextMapPropagator()


@dataclass(frozen=True)
class Exporters:
    """Where the pipeline sends spans, log records and metrics."""

    spans: SpanExporter
    logs: LogRecordExporter
    metrics: MetricReader


def azure_monitor(connection_string: str, tracer_provider: TracerProvider) -> Exporters:
    """Application Insights; raises ValueError for a malformed connection string. (The span
    exporter reads the provider's resource, which it also sends.)"""
    from azure.monitor.opentelemetry.exporter import (
        AzureMonitorLogExporter,
        AzureMonitorMetricExporter,
        AzureMonitorTraceExporter,
    )
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    return Exporters(
        spans=AzureMonitorTraceExporter(
            connection_string=connection_string, tracer_provider=tracer_provider
        ),
        logs=AzureMonitorLogExporter(connection_string=connection_string),
        metrics=PeriodicExportingMetricReader(
            AzureMonitorMetricExporter(connection_string=connection_string)
        ),
    )


class Pipeline:
    """Providers, processors, instrumentations and the log handler of one running set-up."""

    def __init__(
        self,
        exporters_for: Callable[[TracerProvider], Exporters],
        *,
        sampling_ratio: float,
        version: str,
    ) -> None:
        # WEBSITE_SITE_NAME (the Function App's name) is the role name the host reports its
        # own telemetry under, so both sides meet in one node of the application map.
        resource = Resource.create(
            {
                "service.name": os.environ.get("WEBSITE_SITE_NAME") or "axly-api",
                "service.version": version,
            }
        )
        self.tracer_provider = TracerProvider(
            resource=resource, sampler=ApplicationInsightsSampler(sampling_ratio)
        )
        exporters = exporters_for(self.tracer_provider)  # may refuse: nothing is hooked up yet
        self.tracer_provider.add_span_processor(_RequestIdOnSpans())
        self.tracer_provider.add_span_processor(BatchSpanProcessor(_PrivateSpans(exporters.spans)))
        self.tracer = self.tracer_provider.get_tracer("api")

        self.meter_provider = MeterProvider(resource=resource, metric_readers=[exporters.metrics])
        self.meter = self.meter_provider.get_meter("api")

        self.logger_provider = LoggerProvider(resource=resource)
        self.logger_provider.add_log_record_processor(_PrivateLogs())
        self.logger_provider.add_log_record_processor(BatchLogRecordProcessor(exporters.logs))
        self.events = self.logger_provider.get_logger("api.events")
        self.log_handler = LoggingHandler(logger_provider=self.logger_provider)
        self.log_handler.addFilter(_exported)
        logging.getLogger(EXPORTED_LOGGER).addHandler(self.log_handler)

        # Their own metrics (HTTP durations) are not wanted: a no-op meter.
        instruments = {
            "tracer_provider": self.tracer_provider,
            "meter_provider": NoOpMeterProvider(),
        }
        for instrumentor in _instrumentors():
            instrumentor.instrument(**instruments)

    def serve(
        self,
        req: func.HttpRequest,
        context: func.Context | None,
        route: str,
        handler: Callable[[], func.HttpResponse],
    ) -> func.HttpResponse:
        method = req.method.upper()
        url = urlsplit(req.url)
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "http.route": route,
            "url.scheme": url.scheme,
            "url.path": url.path,  # never the query: it may hold a user's words
            "server.address": url.hostname or "",
        }
        if url.port:
            attributes["server.port"] = url.port
        with self.tracer.start_as_current_span(
            f"{method} {route}",
            context=_host_trace_context(context),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,
        ) as span:
            response = handler()
            span.set_attribute("http.response.status_code", response.status_code)
            span.set_attribute(REQUEST_ID, response.headers.get(REQUEST_ID_HEADER, ""))
            if response.status_code >= 500:
                span.set_status(Status(StatusCode.ERROR))
            return response

    @contextmanager
    def dependency(self, name: str, attributes: Mapping[str, Any]) -> Iterator[None]:
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.CLIENT, attributes=dict(attributes), record_exception=False
        ):
            yield

    def event(
        self, name: str, measurements: Mapping[str, float], properties: Mapping[str, Any]
    ) -> None:
        self.events.emit(
            body=name,
            severity_number=SeverityNumber.INFO,
            attributes={
                **properties,
                EVENT_NAME: name,
                EVENT_MEASUREMENTS: json.dumps(dict(measurements)),
                REQUEST_ID: current_request_id.get(),
            },
        )

    # The SDK registers each instrument once and hands the same one back on every call.
    def histogram(self, name: str, unit: str) -> Histogram:
        return self.meter.create_histogram(name, unit=unit)

    def counter(self, name: str, unit: str) -> Counter:
        return self.meter.create_counter(name, unit=unit)

    def flush(self) -> None:
        """Export everything recorded so far, now (tests; production exports in batches)."""
        self.tracer_provider.force_flush()
        self.logger_provider.force_flush()
        self.meter_provider.force_flush()

    def shutdown(self) -> None:
        for instrumentor in _instrumentors():
            instrumentor.uninstrument()
        logging.getLogger(EXPORTED_LOGGER).removeHandler(self.log_handler)
        self.tracer_provider.shutdown()
        self.logger_provider.shutdown()
        self.meter_provider.shutdown()


@cache
def _instrumentors() -> tuple[Any, ...]:
    """Process-wide singletons in OpenTelemetry itself; one pipeline runs at a time."""
    return (PsycopgInstrumentor(), HTTPX2ClientInstrumentor(), URLLibInstrumentor())


def _host_trace_context(context: func.Context | None) -> Context:
    """The host's invocation as the parent; a new trace when there is none (a bad or empty
    traceparent extracts to nothing)."""
    if context is None:
        return Context()
    trace = context.trace_context
    return _TRACE_CONTEXT.extract(
        {"traceparent": trace.trace_parent, "tracestate": trace.trace_state}
    )


def _exported(record: logging.LogRecord) -> bool:
    return record.name not in NOT_EXPORTED_LOGGERS and not getattr(record, "private", False)


class _RequestIdOnSpans(SpanProcessor):
    """Dependencies start while a request is served: they carry its id from the start."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        request_id = current_request_id.get()
        if request_id != "-":  # the variable's default: not serving a request
            span.set_attribute(REQUEST_ID, request_id)


def _scrub(value: Any) -> Any:
    """Text with e-mail addresses masked; other values as they are."""
    if isinstance(value, str):
        return _EMAIL.sub("[email]", value)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return tuple(_scrub(item) for item in value)
    return value


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def _private_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        key: _scrub(_without_query(value) if key in URL_ATTRIBUTES else value)
        for key, value in (attributes or {}).items()
    }


class _PrivateSpans(SpanExporter):
    """Hands the exporter copies of the spans with nothing personal left in them."""

    def __init__(self, exporter: SpanExporter) -> None:
        self._exporter = exporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self._exporter.export([_private_span(span) for span in spans])

    def shutdown(self) -> None:
        self._exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._exporter.force_flush(timeout_millis)


def _private_span(span: ReadableSpan) -> ReadableSpan:
    return ReadableSpan(
        name=_scrub(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_private_attributes(span.attributes),
        events=[
            Event(event.name, _private_attributes(event.attributes), event.timestamp)
            for event in span.events
            if event.name != "exception"
        ],
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, _scrub(span.status.description)),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class _PrivateLogs(LogRecordProcessor):
    """Masks e-mail addresses in log records (their text, attributes, exception text)
    before they are batched for export."""

    def on_emit(self, log_record: ReadWriteLogRecord) -> None:
        record = log_record.log_record
        record.body = _scrub(record.body)
        attributes = record.attributes
        # The SDK wraps them in a mutable BoundedAttributes (ReadWriteLogRecord.__post_init__).
        assert isinstance(attributes, MutableMapping)
        for key in list(attributes):
            attributes[key] = _scrub(attributes[key])

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
