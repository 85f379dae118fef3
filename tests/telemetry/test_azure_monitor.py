"""End to end with the real Azure Monitor exporter: the connection string's IngestionEndpoint
points at a local stand-in (pytest-httpserver), and the envelopes the exporter posts after a
diagnosis turn are read back."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy.orm import Session
from werkzeug import Request, Response

from api import db, telemetry
from api.settings import get_settings
from tests.factories import auth_headers, create_user
from tests.fake_openai import FakeOpenAI

IKEY = "3f8c2a51-7d4e-4b0a-9c11-5e2f6a7b8c9d"
TRACK = "/v2.1/track"  # where the exporter posts, under the IngestionEndpoint
CHAT_MODEL = "gpt-4o-mini-2024-07-18"


class Ingestion:
    """The stand-in's record of every envelope posted to it."""

    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []

    def track(self, request: Request) -> Response:
        batch = json.loads(request.get_data())
        self.envelopes += batch
        accepted = {"itemsReceived": len(batch), "itemsAccepted": len(batch), "errors": []}
        return Response(json.dumps(accepted), content_type="application/json")

    def of_type(self, base_type: str) -> list[dict[str, Any]]:
        return [e for e in self.envelopes if e["data"]["baseType"] == base_type]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.of_type("EventData") if e["data"]["baseData"]["name"] == name]


@pytest.fixture
def ingestion(
    httpserver: HTTPServer,
    override_settings: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Iterator[Ingestion]:
    """Telemetry on, exporting to the stand-in (ask for it before `client`, so the database
    connections are opened, and traced, under it). The exporter's retry storage goes to the
    test's own temporary directory."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stand_in = Ingestion()
    httpserver.expect_request(TRACK, method="POST").respond_with_handler(stand_in.track)
    override_settings(
        APPLICATIONINSIGHTS_CONNECTION_STRING=(
            f"InstrumentationKey={IKEY};IngestionEndpoint={httpserver.url_for('/')}"
        )
    )
    telemetry.stop()
    assert telemetry.start() is not None
    db.dispose_engine()
    yield stand_in
    telemetry.stop()
    db.dispose_engine()


def flush() -> None:
    pipeline = telemetry.start()
    assert pipeline is not None
    pipeline.flush()


def test_a_turn_posts_custom_events_metrics_and_a_request_span_tree(
    ingestion: Ingestion, client: httpx.Client, openai: FakeOpenAI, session: Session
) -> None:
    user = create_user(session)
    response = client.post(
        "/diagnose2", headers=auth_headers(user), json={"q": "It rattles", "dtc_codes": ["P0420"]}
    )
    assert response.status_code == 200
    request_id = response.headers["X-Request-ID"]
    flush()

    assert {e["iKey"] for e in ingestion.envelopes} == {IKEY}
    ((request,),) = [ingestion.of_type("RequestData")]
    assert request["name"] == "Microsoft.ApplicationInsights.Request"
    data = request["data"]["baseData"]
    assert (data["name"], data["responseCode"], data["success"]) == (
        "POST /api/diagnose2",
        "200",
        True,
    )
    assert data["url"] == "http://testserver/api/diagnose2"
    assert data["properties"]["request_id"] == request_id
    operation = request["tags"]["ai.operation.id"]

    dependencies = [
        e
        for e in ingestion.of_type("RemoteDependencyData")
        if e["tags"]["ai.operation.id"] == operation
    ]
    for dependency in dependencies:
        assert dependency["tags"]["ai.operation.parentId"] == data["id"]
        assert dependency["data"]["baseData"]["properties"]["request_id"] == request_id
    types = [d["data"]["baseData"]["type"] for d in dependencies]
    assert types.count("HTTP") == 2  # the diagnosis and the title
    assert "postgresql" in types

    (turn,) = ingestion.events("diagnose_duration_ms")
    assert turn["name"] == "Microsoft.ApplicationInsights.Event"
    assert turn["tags"]["ai.operation.id"] == operation
    turn_data = turn["data"]["baseData"]
    assert turn_data["properties"] == {
        "route": "v2",
        "outcome": "ok",
        "model": "gpt-4o-mini",
        "images": "0",
        "audio": "False",
        "dtc_count": "1",
        "request_id": request_id,
        "logger_name": "api.events",
    }
    assert turn_data["measurements"]["duration_ms"] > 0
    tokens = [e["data"]["baseData"] for e in ingestion.events("openai_tokens")]
    assert [(t["properties"]["call"], t["properties"]["model"]) for t in tokens] == [
        ("diagnosis", CHAT_MODEL),
        ("title", CHAT_MODEL),
    ]
    assert {json.dumps(t["measurements"]) for t in tokens} == {
        json.dumps({"prompt_tokens": 321.0, "completion_tokens": 54.0})
    }

    metrics = {
        (metric["name"], base["properties"].get("call"), base["properties"].get("kind")): (
            metric["value"],
            metric["count"],
            base["properties"],
        )
        for base in (e["data"]["baseData"] for e in ingestion.of_type("MetricData"))
        for metric in base["metrics"]
        if metric["name"] in ("openai_tokens", "diagnose_duration_ms")
    }
    for call in ("diagnosis", "title"):
        assert metrics[("openai_tokens", call, "prompt")][:2] == (321, 1)
        assert metrics[("openai_tokens", call, "completion")][:2] == (54, 1)
    duration, count, dimensions = metrics[("diagnose_duration_ms", None, None)]
    assert (duration, count) == (turn_data["measurements"]["duration_ms"], 1)
    assert dimensions["outcome"] == "ok"


def test_the_seed_instrumentation_key_still_works_with_a_warning(
    override_settings: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    override_settings(APPINSIGHTS_INSTRUMENTATIONKEY=IKEY)
    with caplog.at_level(logging.WARNING, logger="api.telemetry"):
        assert telemetry.connection_string(get_settings()) == f"InstrumentationKey={IKEY}"
    assert "set APPLICATIONINSIGHTS_CONNECTION_STRING" in caplog.text
    override_settings(APPLICATIONINSIGHTS_CONNECTION_STRING=f"InstrumentationKey={IKEY};X=1")
    assert telemetry.connection_string(get_settings()) == f"InstrumentationKey={IKEY};X=1"


def test_a_malformed_connection_string_leaves_telemetry_off_and_the_api_serving(
    override_settings: Callable[..., None],
    client: httpx.Client,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    override_settings(APPLICATIONINSIGHTS_CONNECTION_STRING="InstrumentationKey=not-a-key")
    telemetry.stop()
    try:
        assert client.get("/openapi.json").status_code == 200
        assert telemetry.start() is None
    finally:
        telemetry.stop()
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING is malformed" in caplog.text
