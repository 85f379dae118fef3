"""Declaring HTTP operations once: routing, parsing, auth, sessions, errors, OpenAPI.

Each area has a `Router`; handlers are plain functions decorated with `router.operation(...)`
that take a `Request` (validated body/query/route values, session, user) and return a model,
an ORM object the response schema can read, or a `Reply`. `Router.blueprint()` turns the
operations into one Azure function per route template; that function answers CORS
preflights, dispatches on the method and is the single place errors become problem+json.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import azure.functions as func
from pydantic import BaseModel, TypeAdapter, ValidationError

from api.errors import (
    AppError,
    AuthenticationError,
    BadRequestError,
    FieldError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)
from api.settings import get_settings
from api.utils import http

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.models import User
    from api.services.auth import Caller

log = logging.getLogger("api.http")

ROUTE_PREFIX = "api"  # host.json extensions.http.routePrefix (a test keeps them equal)
JSON = "application/json"
MULTIPART = "multipart/form-data"
_ROUTE_PARAM = re.compile(r"{\*?(\w+)(?::\w+)?\??}")

Handler = Callable[["Request"], Any]


@dataclass
class Request:
    """What a handler gets: the raw request plus everything already validated."""

    http: func.HttpRequest
    request_id: str
    route: dict[str, Any]
    body: Any = None
    query: Any = None
    session: Session | None = None
    caller: Caller | None = None  # who the access token stands for, on operations with auth

    @property
    def user(self) -> User | None:
        return self.caller.user if self.caller else None

    @property
    def db(self) -> Session:
        assert self.session is not None, "operation declared db=False"
        return self.session

    @property
    def current_user(self) -> User:
        assert self.user is not None, "operation declared auth=False"
        return self.user


@dataclass
class Reply:
    """An explicit response: a status other than the operation's, or extra headers."""

    body: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Form:
    """A multipart/form-data alternative to an operation's JSON body: its own model, a
    subclass of the body's that documents it (media are file parts there, Base64 text in
    JSON), and the parser that reads the parts."""

    model: type[BaseModel]
    parse: Callable[[func.HttpRequest], dict[str, Any]]


@dataclass(frozen=True)
class Operation:
    method: str
    route: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: Any = None
    status: int = 200
    auth: bool = True
    db: bool = True
    errors: tuple[int, ...] = ()
    # A cap above MAX_BODY_BYTES; a callable reads it from settings at request time.
    max_body_bytes: int | Callable[[], int] | None = None
    form: Form | None = None
    response_mimetype: str = JSON
    response_headers: tuple[str, ...] = ()  # sent with the success response (documented)
    description: str | None = None
    # False: an empty body (no bytes at all) reads as `{}`, for bodies whose fields are all
    # optional (clients need not invent one).
    body_required: bool = True

    def __post_init__(self) -> None:
        if self.form and not (self.body and issubclass(self.form.model, self.body)):
            raise TypeError(f"{self.method} {self.route}: a form's model subclasses the body's")

    @property
    def content_types(self) -> tuple[str, ...]:
        return (JSON, MULTIPART) if self.form else (JSON,)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def route_params(self) -> list[str]:
        return _ROUTE_PARAM.findall(self.route)

    @cached_property
    def response_adapter(self) -> TypeAdapter | None:
        return TypeAdapter(self.response) if self.response is not None else None


def function_name_for(route: str) -> str:
    """A unique, stable Azure function name per route template (`vehicles/{vehicle_id}`
    becomes `vehicles_vehicle_id`)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", route).strip("_") or "root"


class Router:
    """The operations of one area, turned into one `func.Blueprint`."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def operation(self, method: str, route: str, *, summary: str, **options: Any):
        def register(handler: Handler) -> Handler:
            self.operations.append(
                Operation(
                    method=method.upper(),
                    route=route,
                    handler=handler,
                    summary=summary,
                    tag=self.tag,
                    **options,
                )
            )
            return handler

        return register

    def blueprint(self) -> func.Blueprint:
        blueprint = func.Blueprint()
        routes: dict[str, dict[str, Operation]] = {}
        for op in self.operations:
            routes.setdefault(op.route, {})[op.method] = op
        for route, by_method in routes.items():
            _register_route(blueprint, route, by_method)
        return blueprint


def _register_route(blueprint: func.Blueprint, route: str, by_method: dict[str, Operation]):
    def handle(req: func.HttpRequest) -> func.HttpResponse:
        return dispatch(req, by_method)

    name = function_name_for(route)
    handle.__name__ = handle.__qualname__ = name
    methods = [*by_method, "OPTIONS"]
    blueprint.function_name(name=name)(blueprint.route(route=route, methods=methods)(handle))


def dispatch(req: func.HttpRequest, by_method: dict[str, Operation]) -> func.HttpResponse:
    """Serve one invocation; every exception ends here as a problem+json response."""
    started = time.perf_counter()
    request_id = http.request_id_for(req.headers.get(http.REQUEST_ID_HEADER))
    token = http.current_request_id.set(request_id)
    origin = req.headers.get("Origin")
    method = req.method.upper()
    path = urlsplit(req.url).path  # logged without the query: it may hold a user's words
    allowed: list[str] = []
    try:
        allowed = get_settings().cors_allowed_origins
        if method == "OPTIONS":
            response = func.HttpResponse(
                status_code=204,
                headers=http.preflight_headers(origin, allowed, [*by_method, "OPTIONS"]),
            )
        else:
            op = by_method.get(method)
            if op is None:
                raise MethodNotAllowedError(
                    f"{method} is not allowed here", headers={"Allow": ", ".join(by_method)}
                )
            response = _run(op, req, request_id)
    except AppError as error:
        level = logging.WARNING if error.status < 500 else logging.ERROR
        log.log(level, "%s %s -> %s %s", method, path, error.status, error.code)
        response = http.problem_response(error)
    except Exception:
        log.exception("Unhandled error serving %s %s (request %s)", method, path, request_id)
        response = http.internal_error_response()
    if method != "OPTIONS":  # errors too: a browser app must be able to read them
        response.headers.update(http.cors_headers(origin, allowed))
    response.headers[http.REQUEST_ID_HEADER] = request_id
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    log.info(
        "%s %s -> %s in %.1f ms [request %s]",
        method,
        path,
        response.status_code,
        (time.perf_counter() - started) * 1000,
        request_id,
    )
    http.current_request_id.reset(token)
    return response


def _run(op: Operation, req: func.HttpRequest, request_id: str) -> func.HttpResponse:
    """Authenticate first (a caller without a valid token learns nothing about ids or
    bodies), then validate the route, query and body, then run the handler."""
    token = _bearer_token(req) if op.auth else None  # refused before touching the database
    with _unit_of_work(op) as session:
        caller = None
        if token is not None:
            from api.services.auth import authenticate

            caller = authenticate(session=session, token=token)
        request = Request(
            http=req,
            request_id=request_id,
            route=_route_values(op, req.route_params),
            query=_validate(op.query, dict(req.params), "query") if op.query else None,
            body=_parse_body(op, req) if op.body else None,
            session=session,
            caller=caller,
        )
        return _serialise(op, op.handler(request))


@contextmanager
def _unit_of_work(op: Operation) -> Iterator[Session | None]:
    if not (op.db or op.auth):
        yield None
        return
    from sqlalchemy.exc import OperationalError, TimeoutError

    from api.db import session_scope

    try:
        with session_scope() as session:
            yield session
    except (TimeoutError, OperationalError):
        # No pooled connection free in time, the database went away mid-request, or a
        # deadlock: the client can retry, so this is a 503, not a bug's 500.
        log.warning("Database unavailable during a request", exc_info=True)
        raise ServiceUnavailableError(
            "The database is busy or unreachable; try again shortly", code="database_unavailable"
        ) from None


def _route_values(op: Operation, raw: dict[str, str]) -> dict[str, Any]:
    """Re-check route values in Python: direct calls bypass the host's constraints, and a
    malformed id must look exactly like one that does not exist."""
    values: dict[str, Any] = {}
    for name in op.route_params:
        value = raw.get(name)
        if name.endswith("_id"):
            try:
                value = uuid.UUID(value or "")
            except ValueError:
                raise NotFoundError(f"No such {name.removesuffix('_id')}") from None
        values[name] = value
    return values


def _bearer_token(req: func.HttpRequest) -> str:
    scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Send an access token as 'Authorization: Bearer <token>'")
    return token.strip()


def media_type(req: func.HttpRequest) -> str:
    return (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def _parse_body(op: Operation, req: func.HttpRequest) -> BaseModel:
    raw = req.get_body() or b""
    if not raw and not op.body_required:
        return _validate(op.body, {}, "body")
    limit = op.max_body_bytes() if callable(op.max_body_bytes) else op.max_body_bytes
    limit = limit or get_settings().max_body_bytes
    if len(raw) > limit:
        raise PayloadTooLargeError(f"The request body is larger than {limit} bytes")
    mime = media_type(req)
    if mime not in op.content_types:
        raise UnsupportedMediaTypeError(
            f"Send the request body as {' or '.join(op.content_types)}"
            + (f", not {mime}" if mime else "")
        )
    if mime == MULTIPART and op.form is not None:
        return _validate(op.form.model, op.form.parse(req), "body")
    try:
        data = json.loads(raw)
    # RecursionError: nesting deeper than the parser can follow, not a bug of ours.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if hasattr(exc, "lineno") else ""
        raise BadRequestError(
            f"The request body is not valid JSON{where}", code="malformed_json"
        ) from None
    return _validate(op.body, data, "body")


def _validate(model: type[BaseModel], data: Any, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailedError(
            [
                FieldError(loc=[where, *error["loc"]], message=error["msg"], type=error["type"])
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None


def _serialise(op: Operation, result: Any) -> func.HttpResponse:
    if isinstance(result, func.HttpResponse):
        return result
    reply = result if isinstance(result, Reply) else Reply(body=result, status=op.status)
    if reply.body is None:
        return func.HttpResponse(status_code=reply.status, headers=reply.headers)
    body = reply.body
    if op.response_adapter is not None:
        body = op.response_adapter.dump_python(
            op.response_adapter.validate_python(body, from_attributes=True),
            mode="json",
            by_alias=True,
        )
    elif isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    return http.json_response(body, status=reply.status, headers=reply.headers)
