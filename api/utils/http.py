"""HTTP response helpers: JSON and RFC 9457 problem bodies, request ids."""

from __future__ import annotations

import ipaddress
import json
import re
import uuid
from collections.abc import Mapping
from contextvars import ContextVar
from http import HTTPStatus
from typing import Any

import azure.functions as func

from api.errors import AppError, ValidationFailedError
from api.utils.text import safe_text

PROBLEM_JSON = "application/problem+json"
# A detail may quote something the client sent (a content type, a field name): kept short,
# so no error body grows with the request (see api.errors.MAX_FIELD_ERRORS).
MAX_DETAIL_CHARS = 1000
REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

# Headers a browser client may read from our responses (Access-Control-Expose-Headers).
EXPOSED_HEADERS = (
    "Location, Retry-After, WWW-Authenticate, X-Request-ID, RateLimit, RateLimit-Policy, "
    "Idempotent-Replayed, Content-Disposition"
)
# A file's extension by the type its bytes were sniffed as (api/utils/media.py).
FILE_EXTENSIONS = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/webp": "webp",
    "image/gif": "gif",
    "audio/wav": "wav",
    "audio/mp4": "m4a",
    "audio/ogg": "ogg",
    "audio/webm": "webm",
    "audio/flac": "flac",
    "audio/mpeg": "mp3",
}
# A user's own file: the device may keep it a day; shared caches never (Bearer requests are
# not stored by them anyway).
PRIVATE_FILE_CACHE = "private, max-age=86400"

# The current invocation's request id, for log records (see api/utils/logs.py).
current_request_id: ContextVar[str] = ContextVar("current_request_id", default="-")


def request_id_for(incoming: str | None) -> str:
    """The request-id rule, for every response: echo a client's X-Request-ID when it is safe
    to log (1-128 letters, digits, '.', '_' or '-'), else mint one (32 hex digits)."""
    if incoming and _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


FORWARDED_FOR_HEADER = "X-Forwarded-For"
IPV6_CLIENT_PREFIX = 64  # one subscriber's network: its addresses are the client's to pick


def client_address(req: func.HttpRequest) -> str:
    """Where the request came from, for per-client throttles.

    Trust assumption: Azure's front end (the App Service / Functions front-end role that
    terminates the client's connection) adds the address it accepted the connection from,
    with its port, as the LAST hop of X-Forwarded-For, appending to any value the client
    sent; the Functions host passes the header on unchanged (it has no forwarded-headers
    middleware: azure-functions-host v4.1037 only reads X-Forwarded-Proto). Earlier hops are
    whatever the client wrote, so only the last one is used: a client cannot choose a new
    identity per request. Behind another proxy of ours (Front Door, API Management) the last
    hop would be that proxy, which would then have to be trusted and skipped. devhost adds
    the hop the same way. An IPv6 client counts by its /64 (the addresses a subscriber may
    rotate through freely)."""
    hops = (req.headers.get(FORWARDED_FOR_HEADER) or "").split(",")
    hop = hops[-1].strip()
    address = _ip_of(hop)
    if address is None:
        return hop[:64] or "unknown"
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(address)


def _ip_of(hop: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address of a hop written `ip`, `ip:port` or `[ipv6]:port`."""
    host = hop[1:].partition("]")[0] if hop.startswith("[") else hop
    for candidate in (host, host.rpartition(":")[0]):
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    return None


def json_response(
    body: Any,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    mimetype: str = "application/json",
) -> func.HttpResponse:
    encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return encoded_json_response(encoded, status=status, headers=headers, mimetype=mimetype)


def encoded_json_response(
    encoded: bytes,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    mimetype: str = "application/json",
) -> func.HttpResponse:
    """`json_response` of a body already encoded as compact UTF-8 JSON."""
    return func.HttpResponse(
        body=encoded,
        status_code=status,
        headers=dict(headers or {}),
        mimetype=mimetype,
        charset="utf-8",
    )


def file_response(data: bytes, mimetype: str, *, filename: str) -> func.HttpResponse:
    """Stored bytes as a download. `filename` is ours (ASCII, no quotes), never a client's;
    the type was sniffed from the bytes when they were stored, and X-Content-Type-Options:
    nosniff (set on every response) keeps browsers from guessing another."""
    return func.HttpResponse(
        data,
        mimetype=mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": PRIVATE_FILE_CACHE,
        },
    )


def problem_body(error: AppError) -> dict[str, Any]:
    """The RFC 9457 body for a domain error; `code` is our stable machine-readable name."""
    body: dict[str, Any] = {
        "type": f"https://api.axly.pro/problems/{error.code.replace('_', '-')}",
        "title": error.title,
        "status": error.status,
        "detail": safe_text(error.detail, MAX_DETAIL_CHARS),
        "code": error.code,
        **error.extra,
    }
    if isinstance(error, ValidationFailedError):
        body["errors"] = [
            {
                "loc": list(e.loc),
                "field": ".".join(str(p) for p in e.loc),
                "message": e.message,
                "type": e.type,
            }
            for e in error.errors
        ]
        if error.omitted:
            body["errors_omitted"] = error.omitted
    return body


def problem_response(error: AppError) -> func.HttpResponse:
    return json_response(
        problem_body(error), status=error.status, headers=error.headers, mimetype=PROBLEM_JSON
    )


def internal_error_response() -> func.HttpResponse:
    """What a client sees for a bug: a generic 500, never the exception's text."""
    body = {
        "type": "about:blank",
        "title": HTTPStatus.INTERNAL_SERVER_ERROR.phrase,
        "status": 500,
        "detail": "An unexpected error occurred. Quote the X-Request-ID when reporting it.",
        "code": "internal_error",
    }
    return json_response(body, status=500, mimetype=PROBLEM_JSON)
