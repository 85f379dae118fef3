"""Health, the OpenAPI document and its docs page."""

from __future__ import annotations

from functools import cache
from typing import Any

import azure.functions as func

from api.endpoints import Reply, Request, Router
from api.schemas.health import Health
from api.services.health import check_health
from api.settings import get_settings

router = Router("health")

# Swagger UI from a CDN, pinned: the page is for humans with a browser (and internet).
SWAGGER_UI = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5.17.14"
DOCS_PAGE = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Axly API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{SWAGGER_UI}/swagger-ui.css"></head>
<body><div id="docs"></div>
<script src="{SWAGGER_UI}/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "openapi.json", dom_id: "#docs"}});</script>
<noscript>The API description is at <a href="openapi.json">openapi.json</a>.</noscript>
</body></html>
"""


@router.operation(
    "GET",
    "health",
    summary="Is the API able to serve?",
    response=Health,
    auth=False,
    db=False,
    errors=(503,),
)
def health(request: Request) -> Reply:
    report = check_health()
    body = Health(
        status=report.status,
        database=report.database,
        schema=report.schema,
        version=report.version,
        detail=report.detail,
    )
    return Reply(body, status=200 if report.healthy else 503)


@cache
def _openapi_document() -> dict:
    from api.openapi import build_openapi
    from api.routes import ROUTERS

    return build_openapi(ROUTERS, version=get_settings().app_version)


@router.operation(
    "GET",
    "openapi.json",
    summary="This API's OpenAPI 3.1 description",
    response=dict[str, Any],
    auth=False,
    db=False,
)
def openapi(request: Request) -> dict[str, Any]:
    return _openapi_document()


@router.operation(
    "GET",
    "docs",
    summary="Human-readable API docs (HTML)",
    auth=False,
    db=False,
    response_mimetype="text/html",
)
def docs(request: Request) -> func.HttpResponse:
    return func.HttpResponse(DOCS_PAGE, mimetype="text/html", charset="utf-8")
