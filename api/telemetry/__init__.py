"""Telemetry to Application Insights: requests, dependencies, logs, custom events, metrics.

Export is on when APPLICATIONINSIGHTS_CONNECTION_STRING is set (the seed's
APPINSIGHTS_INSTRUMENTATIONKEY still works, with a warning). It starts at the first
invocation, not at import: without a connection string nothing of OpenTelemetry or the Azure
Monitor exporter is ever imported, the cold start is what it was, and every function here is
a no-op (the metrics stay log lines, see `api.utils.metrics`). The pipeline itself lives in
`api.telemetry.pipeline`; this module is the cheap front door the rest of the app calls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import azure.functions as func

    from api.settings import Settings
    from api.telemetry.pipeline import Exporters, Pipeline

log = logging.getLogger(__name__)

Value = str | int | float | bool

_lock = threading.Lock()
_decided = False  # start() has looked at the settings (or been given exporters)
_pipeline: Pipeline | None = None


def connection_string(settings: Settings) -> str:
    """The Application Insights connection string; "" when telemetry is off."""
    if settings.applicationinsights_connection_string:
        return settings.applicationinsights_connection_string
    if settings.appinsights_instrumentationkey:
        log.warning(
            "APPINSIGHTS_INSTRUMENTATIONKEY is deprecated: set "
            "APPLICATIONINSIGHTS_CONNECTION_STRING (Application Insights > Overview > "
            "Connection String) instead"
        )
        return f"InstrumentationKey={settings.appinsights_instrumentationkey}"
    return ""


def start(exporters: Exporters | None = None) -> Pipeline | None:
    """Start exporting, once per process: to `exporters` when given (tests), else to Azure
    Monitor when a connection string is set. Returns the running pipeline, if any."""
    global _decided, _pipeline
    if _decided:
        return _pipeline
    with _lock:
        if not _decided:
            _pipeline = _build(exporters)
            _decided = True
    return _pipeline


def _build(exporters: Exporters | None) -> Pipeline | None:
    from api.settings import MisconfiguredError, get_settings

    try:
        settings = get_settings()
    except MisconfiguredError:  # the app answers each request with a 503 until fixed
        return None
    target = connection_string(settings)
    if exporters is None and not target:
        return None
    from api.telemetry.pipeline import Pipeline, azure_monitor

    try:
        return Pipeline(
            (lambda _: exporters) if exporters else partial(azure_monitor, target),
            sampling_ratio=settings.telemetry_sampling_ratio,
            version=settings.app_version,
        )
    except ValueError:  # the exporter's verdict on a malformed connection string
        log.error("APPLICATIONINSIGHTS_CONNECTION_STRING is malformed; telemetry is off")
        return None


def stop() -> None:
    """Flush and shut the pipeline down; the next invocation decides afresh (tests). At
    interpreter exit the SDK flushes by itself."""
    global _decided, _pipeline
    with _lock:
        if _pipeline is not None:
            _pipeline.shutdown()
        _pipeline, _decided = None, False


def serve(
    req: func.HttpRequest,
    context: func.Context | None,
    route: str,
    handler: Callable[[], func.HttpResponse],
) -> func.HttpResponse:
    """Run one invocation of `route` (e.g. `/api/vehicles/{vehicle_id}`) as a request span
    under the trace context the Functions host passed in `context`."""
    pipeline = start()
    if pipeline is None:
        return handler()
    return pipeline.serve(req, context, route, handler)


@contextmanager
def dependency(name: str, **attributes: Value) -> Iterator[None]:
    """A call to an outside service no instrumentation library sees (e.g. SMTP)."""
    if _pipeline is None:
        yield
        return
    with _pipeline.dependency(name, attributes):
        yield


def event(name: str, *, measurements: Mapping[str, float], properties: Mapping[str, Value]) -> None:
    """A custom event (the customEvents table)."""
    if _pipeline is not None:
        _pipeline.event(name, measurements, properties)


def histogram(name: str, value: float, *, unit: str, attributes: Mapping[str, Value]) -> None:
    if _pipeline is not None:
        _pipeline.histogram(name, unit).record(value, dict(attributes))


def counter(name: str, value: int, *, unit: str, attributes: Mapping[str, Value]) -> None:
    if _pipeline is not None:
        _pipeline.counter(name, unit).add(value, dict(attributes))
