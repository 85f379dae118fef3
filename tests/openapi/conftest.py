"""The OpenAPI document as client developers get it: fetched from the running app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.harness import local_host


@pytest.fixture(scope="session")
def openapi_document() -> dict[str, Any]:
    """GET /api/openapi.json through the local host (no database needed)."""
    transport = httpx.WSGITransport(app=local_host())
    with httpx.Client(transport=transport, base_url="http://testserver") as http:
        response = http.get("/api/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="session")
def openapi_file(
    openapi_document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The served document saved where a generator can read it."""
    path = tmp_path_factory.mktemp("openapi") / "openapi.json"
    path.write_text(json.dumps(openapi_document), encoding="utf-8")
    return path
