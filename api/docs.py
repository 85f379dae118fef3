"""The docs page (`/api/docs`): Swagger UI served by the app itself, from the copy of
swagger-ui-dist in `api/static/swagger-ui/` (the Makefile's `swagger-ui` target fetches it),
so the page needs no network beyond this API. Asset URLs carry a hash of their content, so
browsers may keep them for a year."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from urllib.parse import urlsplit

import azure.functions as func

from api.errors import NotFoundError

STATIC = Path(__file__).resolve().parent / "static"
LONG_LIVED = "public, max-age=31536000, immutable"
# Everything from this API only; Swagger UI sets inline styles and draws icons from data: URIs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


@dataclass(frozen=True)
class Asset:
    path: Path
    media_type: str


ASSETS = {
    "swagger-ui.css": Asset(STATIC / "swagger-ui" / "swagger-ui.css", "text/css"),
    "swagger-ui-bundle.js": Asset(
        STATIC / "swagger-ui" / "swagger-ui-bundle.js", "text/javascript"
    ),
    "docs.js": Asset(STATIC / "docs.js", "text/javascript"),
}

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Axly API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="{swagger-ui.css}"></head>
<body>
<p id="docs-status" role="status"><span>Loading the API docs… If this message stays, the
docs page's script did not load or JavaScript is off; the API description itself is at
</span><a href="openapi.json">openapi.json</a>.</p>
<div id="docs"></div>
<script src="{swagger-ui-bundle.js}"></script>
<script src="{docs.js}"></script>
</body></html>
"""


@cache
def _content(name: str) -> bytes:
    return ASSETS[name].path.read_bytes()


@cache
def _gzipped(name: str) -> bytes:
    return gzip.compress(_content(name), mtime=0)


@cache
def page() -> str:
    """The HTML, each asset linked as `docs/<name>?v=<content hash>`."""
    html = PAGE
    for name in ASSETS:
        digest = hashlib.sha256(_content(name)).hexdigest()[:16]
        html = html.replace("{" + name + "}", f"docs/{name}?v={digest}")
    return html


def page_response(url: str) -> func.HttpResponse:
    """The page; at `docs/` (the host takes one trailing slash as the same route) a redirect
    to `docs` instead, since there the page's relative links would resolve one level too
    deep (`docs/docs/…`, `docs/openapi.json`)."""
    if urlsplit(url).path.endswith("/"):
        return func.HttpResponse(status_code=308, headers={"Location": "../docs"})
    return func.HttpResponse(
        page(),
        mimetype="text/html",
        charset="utf-8",
        headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY},
    )


def asset_response(name: str, accept_encoding: str | None) -> func.HttpResponse:
    """One of the page's assets, gzipped when the client takes it; anything else is 404.

    Compressed here because nothing else does: Azure's Functions host writes the headers
    and body bytes a worker returns as they are (azure-functions-host,
    src/WebJobs.Script/Binding/Http/RawScriptResult.cs) and does not compress responses on
    Linux plans (azure-functions-host issue #7285)."""
    from werkzeug.http import parse_accept_header

    if name not in ASSETS:
        raise NotFoundError(f"No docs asset named {name}")
    headers = {"Cache-Control": LONG_LIVED, "Vary": "Accept-Encoding"}
    if parse_accept_header(accept_encoding).quality("gzip") > 0:
        body = _gzipped(name)
        headers["Content-Encoding"] = "gzip"
    else:
        body = _content(name)
    return func.HttpResponse(
        body, mimetype=ASSETS[name].media_type, charset="utf-8", headers=headers
    )
