"""Health, the OpenAPI document and its docs page."""

from __future__ import annotations

from functools import cache
from typing import Any

import azure.functions as func

from api.endpoints import Reply, Request, Router
from api.schemas.health import Health, OpenAPIDocument
from api.services.health import check_health
from api.settings import get_settings

router = Router("health")


@router.operation(
    "GET",
    "health",
    summary="Is the API able to serve?",
    response=Health,
    errors=(503,),
)
def health(request: Request) -> Reply:
    report = check_health()
    return Reply(report, status=200 if report.healthy else 503)


@cache
def _openapi_document() -> dict[str, Any]:
    from api.openapi import build_openapi
    from api.routes import routers

    return build_openapi(routers(), version=get_settings().app_version)


@router.operation(
    "GET",
    "openapi.json",
    summary="This API's OpenAPI 3.1 description",
    response=OpenAPIDocument,
)
def openapi(request: Request) -> dict[str, Any]:
    return _openapi_document()


@router.operation(
    "GET",
    "docs",
    summary="Human-readable API docs (HTML; Swagger UI served by this API, no CDN)",
    response_mimetype="text/html",
)
def docs(request: Request) -> func.HttpResponse:
    from api import docs as docs_page  # the docs page and its assets: not a health check's

    return docs_page.page_response(request.http.url)


@router.operation(
    "GET",
    "docs/{asset}",
    summary="The docs page's scripts and styles (cached for a year: their URLs change with them)",
)
def docs_asset(request: Request, asset: str) -> func.HttpResponse:
    from api import docs as docs_page

    return docs_page.asset_response(asset, request.http.headers.get("Accept-Encoding"))
