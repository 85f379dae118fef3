"""Without a connection string nothing of OpenTelemetry or the Azure Monitor exporter is
imported, neither at start-up nor while serving; with one, it is (so the check can fail).
Each case is a fresh interpreter, as a worker is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

TELEMETRY_PACKAGES = ("opentelemetry", "azure.monitor")

# Index the app as the worker does, then serve one request through the local host.
SERVE_ONE_REQUEST = f"""
import json, sys
import httpx
import function_app
from devhost.host import create_app

def loaded():
    return sorted(m for m in sys.modules if m.startswith({TELEMETRY_PACKAGES!r}))

at_start = loaded()
transport = httpx.WSGITransport(app=create_app(function_app.app))
with httpx.Client(transport=transport, base_url="http://local/api") as client:
    status = client.get("/openapi.json").status_code
print(json.dumps({{"at_start": at_start, "serving": loaded(), "status": status}}))
"""


def serve_one_request(**env: str) -> dict:
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("APPLICATIONINSIGHTS_CONNECTION", "APPINSIGHTS"))
    }
    output = subprocess.run(
        [sys.executable, "-c", SERVE_ONE_REQUEST],
        env={**environment, **env},
        capture_output=True,
        check=True,
        timeout=60,
    )
    return json.loads(output.stdout)


@pytest.mark.slow
def test_without_a_connection_string_no_telemetry_module_is_ever_imported() -> None:
    run = serve_one_request()
    assert run["status"] == 200
    assert run["at_start"] == []
    assert run["serving"] == []


@pytest.mark.slow
def test_with_a_connection_string_telemetry_starts_at_the_first_request(
    httpserver: HTTPServer, tmp_path: Path
) -> None:
    httpserver.expect_request("/v2.1/track").respond_with_json(
        {"itemsReceived": 0, "itemsAccepted": 0, "errors": []}
    )
    endpoint = httpserver.url_for("/")
    run = serve_one_request(
        APPLICATIONINSIGHTS_CONNECTION_STRING=(
            f"InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint={endpoint}"
        ),
        TMPDIR=str(tmp_path),  # where the exporter keeps its retry storage
    )
    assert run["status"] == 200
    assert run["at_start"] == []  # the cold start stays as it was
    assert "azure.monitor.opentelemetry.exporter" in run["serving"]
    assert "opentelemetry.sdk.trace" in run["serving"]
