"""OpenAPI 3.1 from the registered operations and their pydantic models (never by hand)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaValue, models_json_schema

from api.endpoints import JSON, ROUTE_PREFIX, Operation, Router
from api.schemas.common import Problem

REF_TEMPLATE = "#/components/schemas/{model}"

# Statuses every operation of a kind can answer, beyond what it declares itself.
BODY_ERRORS = (400, 413, 415, 422)
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
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


Mode = Literal["validation", "serialization"]
Refs = dict[tuple[type[BaseModel], Mode], JsonSchemaValue]


def _component_schemas(operations: list[Operation]) -> tuple[Refs, dict[str, Any]]:
    models: list[tuple[type[BaseModel], Mode]] = [(Problem, "serialization")]
    for op in operations:
        models += [(m, "validation") for m in (op.body, op.query) if m is not None]
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
        "parameters": _path_parameters(op) + _query_parameters(op),
        "responses": _responses(op, refs),
    }
    if op.description:
        document["description"] = op.description
    if op.auth:
        document["security"] = [{"bearerAuth": []}]
    if op.body is not None:
        schema = refs[(op.body, "validation")]
        document["requestBody"] = {
            "required": op.body_required,
            "content": {ct: {"schema": schema} for ct in op.content_types},
        }
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


def _query_parameters(op: Operation) -> list[dict[str, Any]]:
    if op.query is None:
        return []
    schema = op.query.model_json_schema(ref_template=REF_TEMPLATE)
    required = set(schema.get("required", []))
    # The Functions host drops a blank query value before the app sees it (devhost/host.py,
    # `query_params`): `?limit=` is the same as leaving `limit` out.
    return [
        {"name": name, "in": "query", "required": name in required, "schema": prop}
        | ({} if name in required else {"allowEmptyValue": True})
        for name, prop in schema.get("properties", {}).items()
    ]


def _responses(op: Operation, refs: Refs) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    success: dict[str, Any] = {"description": STATUS_TEXT.get(op.status, "Success")}
    if op.response is not None:
        if op.response_mimetype == JSON:
            schema = refs[(op.response, "serialization")]
        else:
            schema = {"type": "string"}
        success["content"] = {op.response_mimetype: {"schema": schema}}
    responses[str(op.status)] = success
    errors = set(op.errors)
    if op.body is not None:
        errors.update(BODY_ERRORS)
    if op.query is not None:
        errors.add(422)
    if op.path_params:
        errors.add(404)
    if op.auth:
        errors.update(AUTH_ERRORS)
    if op.db or op.auth:
        errors.update(DB_ERRORS)
    problem = {"$ref": REF_TEMPLATE.format(model="Problem")}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": STATUS_TEXT.get(status, "Error"),
            "content": {"application/problem+json": {"schema": problem}},
        }
    return responses
