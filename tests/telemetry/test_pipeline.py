"""What the telemetry pipeline exports, read from the OpenTelemetry SDK's in-memory
exporters: a request span tree under the host's trace, dependencies, log records and custom
events with the request id, metrics with their dimensions, and sampling that never drops
exceptions, events or metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy.orm import Session

from api import telemetry
from api.services import vehicles
from tests.exported import Exported
from tests.factories import PNG, auth_headers, b64, create_user
from tests.fake_openai import FakeOpenAI, error_response
from tests.harness import changed_settings

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER = f"00-{TRACE_ID}-b7ad6b7169203331-01"  # the caller's W3C traceparent
CHAT_MODEL = "gpt-4o-mini-2024-07-18"  # what the fake provider says answered


def diagnose(client: httpx.Client, session: Session, **headers: str) -> httpx.Response:
    user = create_user(session)
    return client.post(
        "/diagnose2",
        headers={**auth_headers(user), **headers},
        json={
            "q": "It rattles",
            "images": [b64(PNG)],
            "dtc_codes": ["P0420", "P0301"],
        },
    )


def request_span(spans: list[ReadableSpan]) -> ReadableSpan:
    (server,) = [span for span in spans if span.kind == SpanKind.SERVER]
    return server


def test_a_turn_is_one_span_tree_under_the_hosts_trace_with_the_request_id(
    exported: Exported, client: httpx.Client, openai: FakeOpenAI, session: Session
) -> None:
    response = diagnose(client, session, traceparent=CALLER)
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]

    spans = exported.spans
    server = request_span(spans)
    assert server.name == "POST /api/diagnose2"
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert server.parent.is_remote
    assert server.attributes["http.route"] == "/api/diagnose2"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["request_id"] == request_id

    trace = [span for span in spans if span.context.trace_id == server.context.trace_id]
    children = [span for span in trace if span is not server]
    assert [span for span in spans if span.attributes.get("request_id") == request_id] == trace
    for child in children:
        assert child.parent is not None
        assert child.parent.span_id == server.context.span_id
        assert child.kind == SpanKind.CLIENT
        assert child.attributes["request_id"] == request_id
    database = [span for span in children if span.attributes.get("db.system") == "postgresql"]
    assert any("INSERT INTO chat_messages" in str(s.attributes["db.statement"]) for s in database)
    provider = [span for span in children if "http.url" in (span.attributes or {})]
    assert [s.attributes["http.url"] for s in provider] == [
        openai.server.url_for("/v1/chat/completions")
    ] * 2  # the diagnosis, then the title
    assert {s.attributes["http.status_code"] for s in provider} == {200}


def test_a_turn_sends_its_custom_events_and_metrics(
    exported: Exported, client: httpx.Client, openai: FakeOpenAI, session: Session
) -> None:
    response = diagnose(client, session)
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]

    billed = {"prompt_tokens": 321, "completion_tokens": 54}
    assert exported.events("openai_tokens") == [
        ({"model": CHAT_MODEL, "call": "diagnosis", "request_id": request_id}, billed),
        ({"model": CHAT_MODEL, "call": "title", "request_id": request_id}, billed),
    ]
    ((properties, measurements),) = exported.events("diagnose_duration_ms")
    turn = {
        "route": "v2",
        "outcome": "ok",
        "model": "gpt-4o-mini",
        "images": 1,
        "audio": False,
        "dtc_count": 2,
    }
    assert properties == {**turn, "request_id": request_id}
    assert measurements["duration_ms"] > 0

    (histogram,) = exported.metric_points("diagnose_duration_ms")
    assert dict(histogram.attributes) == turn
    assert (histogram.count, histogram.sum) == (1, measurements["duration_ms"])
    tokens = {
        (p.attributes["call"], p.attributes["kind"], p.attributes["model"]): p.value
        for p in exported.metric_points("openai_tokens")
    }
    assert tokens == {
        ("diagnosis", "prompt", CHAT_MODEL): 321,
        ("diagnosis", "completion", CHAT_MODEL): 54,
        ("title", "prompt", CHAT_MODEL): 321,
        ("title", "completion", CHAT_MODEL): 54,
    }
    # The metric log lines are not sent a second time, as traces.
    assert not [log for log in exported.logs if str(log.log_record.body).startswith("metric ")]


def test_a_failed_turn_is_counted_with_its_outcome(
    exported: Exported, client: httpx.Client, openai: FakeOpenAI, session: Session
) -> None:
    openai.replies = [error_response(500)]
    assert diagnose(client, session).status_code == 502
    ((properties, _),) = exported.events("diagnose_duration_ms")
    assert properties["outcome"] == "upstream_error"
    assert exported.events("openai_tokens") == []  # a failed reply bills nothing
    (histogram,) = exported.metric_points("diagnose_duration_ms")
    assert histogram.attributes["outcome"] == "upstream_error"
    server = request_span(exported.spans)
    assert server.attributes["http.response.status_code"] == 502
    assert server.status.status_code == StatusCode.ERROR


def test_log_records_carry_the_request_id_and_their_request(
    exported: Exported, client: httpx.Client, session: Session
) -> None:
    user = create_user(session)
    response = client.get("/vehicles/not-a-uuid", headers=auth_headers(user))
    assert response.status_code == 404
    request_id = response.headers["X-Request-ID"]

    server = request_span(exported.spans)
    ours = [log.log_record for log in exported.logs]
    warning = next(log for log in ours if log.severity_text == "WARN")
    assert warning.body == "GET /api/vehicles/not-a-uuid -> 404 not_found"
    for record in ours:
        assert record.attributes["request_id"] == request_id
        assert record.trace_id == server.context.trace_id
        assert record.span_id == server.context.span_id


@pytest.fixture
def broken_vehicle_list(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(**_: object) -> None:
        raise RuntimeError("boom while reading the list of driver@example.com")

    monkeypatch.setattr(vehicles, "list_vehicles", fail)


def test_an_unhandled_error_is_one_exception_item_with_the_request_id(
    exported: Exported, client: httpx.Client, session: Session, broken_vehicle_list: None
) -> None:
    response = client.get("/vehicles", headers=auth_headers(create_user(session)))
    assert response.status_code == 500

    (exception,) = [
        log.log_record
        for log in exported.logs
        if "exception.type" in (log.log_record.attributes or {})
    ]
    assert exception.attributes["exception.type"] == "RuntimeError"
    assert exception.attributes["exception.message"] == (
        "boom while reading the list of [email]"  # masked on the way out
    )
    assert exception.attributes["request_id"] == response.headers["X-Request-ID"]
    server = request_span(exported.spans)
    assert server.status.status_code == StatusCode.ERROR
    assert all(not span.events for span in exported.spans)  # not a second time, on a span


def test_sampling_drops_spans_only_never_exceptions_events_or_metrics(
    override_settings: Callable[..., None],
    start_exporting: Callable[[], Exported],
    client: httpx.Client,
    openai: FakeOpenAI,
    session: Session,
    broken_vehicle_list: None,
) -> None:
    override_settings(TELEMETRY_SAMPLING_RATIO="0")
    exported = start_exporting()
    assert diagnose(client, session).status_code == 200
    assert client.get("/vehicles", headers=auth_headers(create_user(session))).status_code == 500

    assert exported.spans == []
    assert len(exported.events("diagnose_duration_ms")) == 1
    assert len(exported.events("openai_tokens")) == 2
    assert exported.metric_points("diagnose_duration_ms")
    assert exported.metric_points("openai_tokens")
    assert [log for log in exported.logs if "exception.type" in (log.log_record.attributes or {})]


def test_the_hosts_own_sampling_keeps_requests_exceptions_and_events_too() -> None:
    """The Functions host samples what it sends itself (host.json); it agrees with ours."""
    host = json.loads(Path("host.json").read_text())
    sampling = host["logging"]["applicationInsights"]["samplingSettings"]
    assert {"Request", "Exception", "Event"} <= set(sampling["excludedTypes"].split(";"))


def test_e_mails_logged_in_development_are_never_exported(
    exported: Exported, client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="api.services.email")
    assert client.post("/request_pin", json={"email": "driver@example.com"}).status_code == 202
    assert any("driver@example.com" in r.getMessage() for r in caplog.records)  # the dev log
    exported_text = " ".join(str(log.log_record.body) for log in exported.logs)
    assert "E-mail to" not in exported_text
    assert "POST /api/request_pin -> 202" in exported_text


def test_urls_are_exported_without_their_query_strings(
    exported: Exported, client: httpx.Client, openai: FakeOpenAI, session: Session
) -> None:
    deployment = "/openai/deployments/gpt-4o-mini/chat/completions"
    openai.server.expect_request(deployment, method="POST").respond_with_handler(openai.chat)
    with changed_settings(
        AZURE_OPENAI_ENDPOINT=openai.server.url_for(""),
        AZURE_OPENAI_API_KEY="azure-test-key",
        AZURE_OPENAI_DEPLOYMENT="gpt-4o-mini",
    ):
        assert diagnose(client, session).status_code == 200
    assert {request.query_string for request, _ in openai.server.log} == {b"api-version=2024-10-21"}
    urls = {
        span.attributes["http.url"]
        for span in exported.spans
        if "http.url" in (span.attributes or {})
    }
    assert urls == {openai.server.url_for(deployment)}


def test_settings_that_cannot_be_read_still_get_the_apps_own_503(
    override_settings: Callable[..., None], client: httpx.Client
) -> None:
    telemetry.stop()  # the next request decides afresh, from these settings
    override_settings(JWT_SECRET="too short")
    response = client.get("/me", headers={"Authorization": "Bearer any"})
    assert response.status_code == 503
    assert response.json()["code"] == "misconfigured"
    assert response.json()["settings"] == ["JWT_SECRET"]
    assert response.headers["X-Request-ID"]
