"""OpenAPI 3.1 from the registered operations and their pydantic models (never by hand)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaValue, models_json_schema

from api.endpoints import (
    IDEMPOTENCY_KEY_HEADER,
    JSON,
    MULTIPART,
    REPLAYED_HEADER,
    Operation,
    Router,
)
from api.functions import ROUTE_PREFIX
from api.schemas.common import Problem, without_null
from api.utils.http import PROBLEM_JSON, REQUEST_ID_HEADER
from api.utils.ratelimit import LIMIT_FIELD, POLICY_FIELD

REF_TEMPLATE = "#/components/schemas/{model}"

# Statuses every operation of a kind can answer, beyond what it declares itself.
BODY_ERRORS = (400, 411, 413, 415, 422)
AUTH_ERRORS = (401,)
DB_ERRORS = (503,)
STATUS_TEXT = {
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    400: "Malformed request",
    401: "Missing or invalid access token",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    411: "Chunked body: send a Content-Length",
    413: "Body too large",
    415: "Unsupported content type",
    422: "Invalid input",
    429: "Too many requests",
    502: "Upstream error",
    503: "Service unavailable",
    504: "Upstream timeout",
}


def openapi_path(route: str) -> str:
    return f"/{ROUTE_PREFIX}/{route}"


# Response headers (components/headers), declared where the server sends them.
HEADERS: dict[str, dict[str, Any]] = {
    REQUEST_ID_HEADER: {
        "description": "The request's id (the client's own X-Request-ID when it sent a sane "
        "one); quote it when reporting a problem",
        "required": True,
        "schema": {"type": "string"},
    },
    "Cache-Control": {
        "description": "no-store, except for the docs page's assets (cached for a year)",
        "required": True,
        "schema": {"type": "string"},
    },
    "Location": {
        "description": "Path of the created resource",
        "required": True,
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again (rate limits; absent when "
        "waiting will not help, e.g. conversation_full)",
        "schema": {"type": "integer", "minimum": 1},
    },
    "WWW-Authenticate": {
        "description": "The Bearer challenge",
        "required": True,
        "schema": {"type": "string"},
    },
    POLICY_FIELD: {
        "description": "The quota policies (IETF draft-ietf-httpapi-ratelimit-headers-11, a "
        'structured-field List): `"diagnoses";q=<DIAGNOSES_PER_DAY>;w=86400, '
        '"attachment-bytes";q=<ATTACHMENT_BYTES_PER_DAY>;qu="content-bytes";w=86400`',
        "required": True,
        "schema": {"type": "string"},
    },
    LIMIT_FIELD: {
        "description": "What is left of each policy now (the same draft): "
        '`"diagnoses";r=<remaining>;t=<seconds before any comes back>, '
        '"attachment-bytes";r=<bytes>;t=<seconds>` (GET /api/me/usage says it in JSON)',
        "required": True,
        "schema": {"type": "string"},
    },
    "Content-Language": {
        "description": "The language the answer is written in",
        "required": True,
        "schema": {"type": "string"},
    },
    "Content-Disposition": {
        "description": 'attachment; filename="axly-<kind>-<id>.<extension>"',
        "required": True,
        "schema": {"type": "string"},
    },
    REPLAYED_HEADER: {
        "description": "`true` when this is the stored response to an earlier request with "
        "the same Idempotency-Key (nothing was done again)",
        "schema": {"type": "string", "enum": ["true"]},
    },
}
ERROR_HEADERS = {401: ("WWW-Authenticate",), 429: ("Retry-After",)}
PARAMETERS = {
    REQUEST_ID_HEADER: {
        "name": REQUEST_ID_HEADER,
        "in": "header",
        "required": False,
        "description": "Your own id for the request (to find it in logs): echoed back when "
        "it is 1-128 letters, digits, '.', '_' or '-'; otherwise the server makes one",
        "schema": {"type": "string"},
    },
    IDEMPOTENCY_KEY_HEADER: {
        "name": IDEMPOTENCY_KEY_HEADER,
        "in": "header",
        "required": False,
        "description": "Makes a retry safe (IETF draft-ietf-httpapi-idempotency-key-header-07): "
        "a new random key (a UUID) per request, the same key when retrying it. Within 24 hours "
        "the same key with the same request (method, path and body) gets the first "
        "successful response again (`Idempotent-Replayed: true`; nothing is done or charged "
        "twice); with another request, 422 idempotency_key_reused; while the first still "
        "runs, 409 request_in_progress with Retry-After. A failed request keeps nothing, so "
        'its retry runs anew. Format: 8-255 of A-Z a-z 0-9 - . _ ~ : + / =, bare or as "..."',
        "schema": {"type": "string", "minLength": 8, "maxLength": 257},
    },
    "Accept-Language": {
        "name": "Accept-Language",
        "in": "header",
        "required": False,
        "description": "Languages to answer in, most wanted first (q-values), e.g. "
        "`es-ES, es;q=0.9, en;q=0.5`; a `language` field wins, and a conversation keeps the "
        "language it was answered in. See SUPPORTED_LANGUAGES",
        "schema": {"type": "string"},
    },
}
REQUEST_ID_PARAMETER = {"$ref": f"#/components/parameters/{REQUEST_ID_HEADER}"}


def build_openapi(routers: Iterable[Router], *, version: str) -> dict[str, Any]:
    operations = [op for router in routers for op in router.operations]
    refs, components = _component_schemas(operations)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(openapi_path(op.route), {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Axly API",
            "version": version,
            "description": "Back-end of the Axly.pro app: accounts, garage and AI diagnosis.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        # Relative: whichever host serves this document (production, or make dev's).
        "servers": [{"url": "/", "description": "The host serving this document"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "headers": HEADERS,
            "parameters": PARAMETERS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


Mode = Literal["validation", "serialization"]
Refs = dict[tuple[type[BaseModel], Mode], JsonSchemaValue]


def _component_schemas(operations: list[Operation]) -> tuple[Refs, dict[str, Any]]:
    """Every body and response model, once each (queries become parameters instead)."""
    models: list[tuple[type[BaseModel], Mode]] = [(Problem, "serialization")]
    for op in operations:
        models += [(m, "validation") for m in (op.body, op.form and op.form.model) if m]
        if op.response is not None:
            models.append((op.response, "serialization"))
    keys = list(dict.fromkeys(models))
    refs, schema = models_json_schema(keys, ref_template=REF_TEMPLATE)
    return {key: refs[key] for key in keys}, schema.get("$defs", {})


def _operation(op: Operation, refs: Refs) -> dict[str, Any]:
    document: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "parameters": [
            *_path_parameters(op),
            *_query_parameters(op),
            *_header_parameters(op),
            REQUEST_ID_PARAMETER,
        ],
        "responses": _responses(op, refs),
    }
    if op.description:
        document["description"] = op.description
    if op.auth:
        document["security"] = [{"bearerAuth": []}]
    if op.body is not None:
        content = {JSON: {"schema": refs[(op.body, "validation")]}}
        if op.form is not None:
            content[MULTIPART] = {"schema": refs[(op.form.model, "validation")]}
        document["requestBody"] = {"required": op.body_required, "content": content}
    return document


def _path_parameters(op: Operation) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": TypeAdapter(declared).json_schema(),
        }
        for name, declared in op.path_params.items()
    ]


def _header_parameters(op: Operation) -> list[dict[str, Any]]:
    names = [*op.request_headers, *([IDEMPOTENCY_KEY_HEADER] if op.idempotent else [])]
    return [{"$ref": f"#/components/parameters/{name}"} for name in names]


def _query_parameters(op: Operation) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    schema = op.query.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", []))
    # The Functions host drops a blank query value before the app sees it (devhost/host.py,
    # `query_params`): `?limit=` is the same as leaving `limit` out.
    return [
        {"name": name, "in": "query", "required": name in required, "schema": _present(prop)}
        | ({} if name in required else {"allowEmptyValue": True})
        for name, prop in schema.get("properties", {}).items()
    ]


def _present(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: a query string has no null, only parameters left out."""
    schema = dict(schema)
    without_null(schema)
    return schema


def _headers(*names: str) -> dict[str, Any]:
    every = (REQUEST_ID_HEADER, "Cache-Control")  # see api.endpoints.dispatch
    return {name: {"$ref": f"#/components/headers/{name}"} for name in (*every, *names)}


def _success_content(op: Operation, refs: Refs) -> dict[str, Any] | None:
    if op.response_files:  # what generators read as a file (see README, HTTP conventions)
        binary = {"schema": {"type": "string", "format": "binary"}}
        return dict.fromkeys(op.response_files, binary)
    if op.response_mimetype != JSON:
        return {op.response_mimetype: {"schema": {"type": "string"}}}
    if op.response is None:
        return None
    return {JSON: {"schema": refs[(op.response, "serialization")]}}


def _responses(op: Operation, refs: Refs) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    replayed = (REPLAYED_HEADER,) if op.idempotent else ()
    success: dict[str, Any] = {
        "description": STATUS_TEXT.get(op.status, "Success"),
        "headers": _headers(*op.response_headers, *replayed),
    }
    content = _success_content(op, refs)
    if content:
        success["content"] = content
    responses[str(op.status)] = success
    errors = set(op.errors)
    if op.body is not None:
        errors.update(BODY_ERRORS)
    if op.query is not None or op.path_adapters or op.idempotent:
        errors.add(422)  # idempotent: a malformed or reused Idempotency-Key
    if len(op.path_adapters) < len(op.path_params):  # an id: unknown or malformed, 404
        errors.add(404)
    if op.idempotent:
        errors.add(409)
    if op.auth:
        errors.update(AUTH_ERRORS)
    if op.db or op.auth:
        errors.update(DB_ERRORS)
    problem = {"$ref": REF_TEMPLATE.format(model="Problem")}
    error_headers = {**ERROR_HEADERS, **({409: ("Retry-After",)} if op.idempotent else {})}
    for status in sorted(errors):
        names = (*error_headers.get(status, ()), *op.error_headers.get(status, ()))
        responses[str(status)] = {
            "description": STATUS_TEXT.get(status, "Error"),
            "headers": _headers(*names),
            "content": {PROBLEM_JSON: {"schema": problem}},
        }
    return responses
