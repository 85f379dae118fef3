"""Declaring HTTP operations once: routing, parsing, auth, sessions, errors, OpenAPI.

Each area has a `Router`; handlers are plain functions decorated with `router.operation(...)`.
A handler's signature is its contract, read once at registration:

- its first parameter is the request, typed `Request`, `DbRequest`, `UserRequest` or
  `SlowUserRequest` (no database; a session; a session and the authenticated caller; the
  caller and a unit-of-work factory instead of a session), subscripted with the body and
  query models to validate: `UserRequest[VehicleCreate]`, `UserRequest[None, Pagination]`
  (left out, a model is None and nothing is read);
- its other parameters are the route's `{name}` parameters, typed `uuid.UUID` or `str`
  (a value that is not a UUID answers 404, like an unknown id);
- it returns what the `response` model reads (a model, an ORM object, a dataclass), a
  `Reply` for another status or extra headers, or None: declared `-> None`, the
  operation answers 204 No Content.

`Router.blueprint()` turns the operations into one Azure function per route template; that
function dispatches on the method and is the single place errors become problem+json. CORS
is the platform's (README, "CORS on Azure"): the host answers preflights and sets
Access-Control-Allow-Origin.

Transactions: services never commit. A `DbRequest`/`UserRequest` handler runs inside one
unit of work (`api.db.session_scope`): committed when it returns, rolled back when it
raises. A handler that waits on something slow — the AI provider, for up to
DIAGNOSE_DEADLINE_S — must not hold a pooled connection (let alone an open transaction)
meanwhile, so it is declared with `SlowUserRequest`: the caller is authenticated in a unit
of work of its own that is closed before the handler runs, and the handler passes
`request.unit_of_work` to its service, which opens one short unit of work per step
(`with unit_of_work() as session:`), each committed or rolled back on its own.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from itertools import islice
from typing import (
    TYPE_CHECKING,
    Any,
    Generic,
    NoReturn,
    TypeVar,
    get_args,
    get_origin,
    get_type_hints,
)
from urllib.parse import urlsplit

import azure.functions as func
from pydantic import BaseModel, TypeAdapter, ValidationError
from typing_extensions import TypeVar as DefaultTypeVar

from api import telemetry
from api.errors import (
    AppError,
    AuthenticationError,
    BadRequestError,
    FieldError,
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

    from api.db import UnitOfWork
    from api.models import User
    from api.services.auth import Caller

log = logging.getLogger("api.http")

ROUTE_PREFIX = "api"  # host.json extensions.http.routePrefix (a test keeps them equal)
JSON = "application/json"
MULTIPART = "multipart/form-data"
# A route is literal segments and whole-segment `{name}` parameters: exactly the forms the
# Functions host and devhost match the same way (no constraints, optional or catch-all
# parameters; a parameter's type is its handler parameter's annotation).
_LITERAL_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_PARAMETER_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What a route parameter may be declared as, and how its text becomes that.
PATH_TYPES: dict[type, Callable[[str], object]] = {uuid.UUID: uuid.UUID, str: str}
# No request body of ours holds more than a few dozen keys and values; a body with far more
# is refused before it is parsed, since parsed JSON costs up to ~25 times its size in memory
# (an array of `{}`) and every bad item could add errors to validate and report.
MAX_JSON_ITEMS = 10_000
# A JSON string (skipped whole, escapes included; an unterminated one runs to the end) or a
# character that opens a container or separates keys and values. Possessive quantifiers keep
# the scan linear on any input.
_JSON_ITEM = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?|([\[{,:])')

BodyT = DefaultTypeVar("BodyT", bound=BaseModel | None, default=None, covariant=True)
QueryT = DefaultTypeVar("QueryT", bound=BaseModel | None, default=None, covariant=True)
HandlerT = TypeVar("HandlerT", bound=Callable[..., object])


class RouteError(Exception):
    """An operation declared in a way the Router cannot serve (raised at import time)."""


@dataclass(frozen=True)
class Request(Generic[BodyT, QueryT]):
    """What a handler gets: the raw request, its id, the validated body and query."""

    http: func.HttpRequest
    request_id: str
    body: BodyT
    query: QueryT


@dataclass(frozen=True)
class DbRequest(Request[BodyT, QueryT]):
    """A request with the invocation's session: committed when the handler returns, rolled
    back when it raises (see `api.db.session_scope`)."""

    session: Session


@dataclass(frozen=True)
class UserRequest(DbRequest[BodyT, QueryT]):
    """A request with a valid access token: `caller` (the user and the session the token
    was issued with) is always set; without a token the handler never runs (401)."""

    caller: Caller

    @property
    def user(self) -> User:
        return self.caller.user


@dataclass(frozen=True)
class SlowUserRequest(Request[BodyT, QueryT]):
    """A request with a valid access token whose handler waits on something slow, so it
    holds no database connection: `caller` was authenticated in a unit of work already
    closed, and `unit_of_work()` opens a short one (committed when its block ends, rolled
    back when it raises) each time the handler's service needs the database."""

    caller: Caller
    unit_of_work: UnitOfWork

    @property
    def user(self) -> User:
        return self.caller.user


@dataclass(frozen=True)
class Reply:
    """An explicit response: a status other than the operation's, or extra headers."""

    body: object = None
    status: int | None = None  # None: the operation's status
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Form:
    """A multipart/form-data alternative to an operation's JSON body: its own model, a
    subclass of the body's that documents it (media are file parts there, Base64 text in
    JSON), and the parser that reads the parts."""

    model: type[BaseModel]
    parse: Callable[[func.HttpRequest], dict[str, Any]]


@dataclass(frozen=True)
class Signature:
    """What a handler's signature declares (see the module's doc)."""

    request_type: type[Request[Any, Any]]
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    path_params: dict[str, type]  # name -> declared type, in route order
    returns_nothing: bool  # declared `-> None`: 204 No Content


@dataclass(frozen=True)
class Operation:
    """One method on one route: its handler, what its signature declares, and the rest."""

    method: str
    route: str
    handler: Callable[..., object]
    signature: Signature
    summary: str
    tag: str
    response: type[BaseModel] | None  # what the Router validates results as
    status: int
    errors: tuple[int, ...]
    description: str | None
    # A cap above MAX_BODY_BYTES; a callable reads it from settings at request time.
    max_body_bytes: int | Callable[[], int] | None
    form: Form | None
    response_mimetype: str
    response_headers: tuple[str, ...]  # sent with the success response (documented)
    body_required: bool

    @property
    def content_types(self) -> tuple[str, ...]:
        return (JSON, MULTIPART) if self.form else (JSON,)

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def body(self) -> type[BaseModel] | None:
        return self.signature.body

    @property
    def query(self) -> type[BaseModel] | None:
        return self.signature.query

    @property
    def path_params(self) -> dict[str, type]:
        return self.signature.path_params

    @property
    def auth(self) -> bool:
        return issubclass(self.signature.request_type, UserRequest | SlowUserRequest)

    @property
    def db(self) -> bool:
        return issubclass(self.signature.request_type, DbRequest | SlowUserRequest)

    @cached_property
    def response_adapter(self) -> TypeAdapter[Any] | None:
        return TypeAdapter(self.response) if self.response is not None else None


def function_name_for(route: str) -> str:
    """A unique, stable Azure function name per route template (`vehicles/{vehicle_id}`
    becomes `vehicles_vehicle_id`)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", route).strip("_") or "root"


def route_parameters(route: str) -> list[str]:
    """The `{name}` parameters of a route, in order; RouteError for any other form."""
    names = []
    for segment in route.split("/"):
        parameter = _PARAMETER_SEGMENT.fullmatch(segment)
        if parameter:
            names.append(parameter.group(1))
        elif not _LITERAL_SEGMENT.fullmatch(segment):
            raise RouteError(
                f"Route {route!r}: {segment!r} is neither a literal segment nor a {{name}} "
                "parameter (constraints, optional and catch-all parameters are not supported; "
                "type a parameter in the handler's signature)"
            )
    if len(set(names)) != len(names):
        raise RouteError(f"Route {route!r} names a parameter twice")
    return names


class Router:
    """The operations of one area, turned into one `func.Blueprint`."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.operations: list[Operation] = []

    def operation(
        self,
        method: str,
        route: str,
        *,
        summary: str,
        description: str | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        max_body_bytes: int | Callable[[], int] | None = None,
        form: Form | None = None,
        response_mimetype: str = JSON,
        response_headers: tuple[str, ...] = (),
        body_required: bool = True,
    ) -> Callable[[HandlerT], HandlerT]:
        """Register the decorated handler for `method` on `route`: what it takes and answers
        is read from its signature (see the module's doc); `response` is the model results
        are validated into; `errors`, the statuses it may answer beyond the ones every
        operation of its kind can; `form`, a multipart/form-data body beside the JSON one;
        `response_headers`, the headers its success response carries (for the document).
        `body_required=False`: an empty body (no bytes) reads as `{}`, for bodies whose
        fields are all optional. RouteError when the declaration cannot be served."""
        method = method.upper()

        def register(handler: HandlerT) -> HandlerT:
            where = f"{method} {route} ({handler.__name__})"
            signature = _read_signature(handler, route, where)
            if signature.returns_nothing and (response is not None or status != 200):
                raise RouteError(f"{where}: a handler returning None answers 204, no body")
            if status == 204:
                raise RouteError(f"{where}: answer 204 by declaring the handler `-> None`")
            if any(op.method == method and op.route == route for op in self.operations):
                raise RouteError(f"{where}: {method} {route} is declared twice")
            if form and not (signature.body and issubclass(form.model, signature.body)):
                raise RouteError(f"{where}: a form's model subclasses the body's model")
            self.operations.append(
                Operation(
                    method=method,
                    route=route,
                    handler=handler,
                    signature=signature,
                    summary=summary,
                    tag=self.tag,
                    response=response,
                    status=204 if signature.returns_nothing else status,
                    errors=errors,
                    description=description,
                    max_body_bytes=max_body_bytes,
                    form=form,
                    response_mimetype=response_mimetype,
                    response_headers=response_headers,
                    body_required=body_required,
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


def _read_signature(handler: Callable[..., object], route: str, where: str) -> Signature:
    """The handler's declaration, or RouteError naming what is wrong with it."""
    hints = get_type_hints(handler)
    parameters = list(inspect.signature(handler).parameters.values())
    if not parameters or parameters[0].kind not in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
    ):
        raise RouteError(f"{where}: the handler takes the request as its first parameter")
    request, *others = parameters
    request_type, body, query = _request_parts(hints.get(request.name), where)
    if [p.name for p in others] != route_parameters(route):
        raise RouteError(
            f"{where}: the parameters after the request must be the route's, in order: "
            f"{route_parameters(route)}"
        )
    path_params: dict[str, type] = {}
    for parameter in others:
        declared = hints.get(parameter.name)
        if not (isinstance(declared, type) and declared in PATH_TYPES):
            raise RouteError(f"{where}: type {parameter.name!r} as uuid.UUID or str")
        path_params[parameter.name] = declared
    if "return" not in hints:
        raise RouteError(f"{where}: annotate what the handler returns")
    return Signature(request_type, body, query, path_params, hints["return"] is type(None))


def _request_parts(
    hint: object, where: str
) -> tuple[type[Request[Any, Any]], type[BaseModel] | None, type[BaseModel] | None]:
    """`UserRequest[Body, Query]` → (UserRequest, Body, Query); a model left out is None."""
    request_type = get_origin(hint) or hint
    if not (isinstance(request_type, type) and issubclass(request_type, Request)):
        raise RouteError(
            f"{where}: the first parameter must be typed Request, DbRequest, UserRequest "
            "or SlowUserRequest"
        )
    body, query = [_model(arg, where) for arg in get_args(hint)] or [None, None]
    return request_type, body, query


def _model(arg: object, where: str) -> type[BaseModel] | None:
    if arg is None or arg is type(None):
        return None
    if isinstance(arg, type) and issubclass(arg, BaseModel):
        return arg
    raise RouteError(f"{where}: a request's body and query are pydantic models (or None)")


def _register_route(blueprint: func.Blueprint, route: str, by_method: dict[str, Operation]) -> None:
    # `context`: the worker passes the invocation context to a function that names it (its
    # trace context parents the request's telemetry).
    def handle(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return telemetry.serve(
            req, context, f"/{ROUTE_PREFIX}/{route}", lambda: dispatch(req, by_method)
        )

    name = function_name_for(route)
    handle.__name__ = handle.__qualname__ = name
    methods = list(by_method)
    blueprint.function_name(name=name)(blueprint.route(route=route, methods=methods)(handle))


def dispatch(req: func.HttpRequest, by_method: dict[str, Operation]) -> func.HttpResponse:
    """Serve one invocation; every exception ends here as a problem+json response."""
    started = time.perf_counter()
    request_id = http.request_id_for(req.headers.get(http.REQUEST_ID_HEADER))
    token = http.current_request_id.set(request_id)
    method = req.method.upper()
    path = urlsplit(req.url).path  # logged without the query: it may hold a user's words
    try:
        # The host only forwards the methods a function declares (any other is its empty
        # 404), so `by_method` always has this one.
        response = _run(by_method[method], req, request_id)
    except AppError as error:
        level = logging.WARNING if error.status < 500 else logging.ERROR
        log.log(level, "%s %s -> %s %s", method, path, error.status, error.code)
        response = http.problem_response(error)
    except Exception:
        log.exception("Unhandled error serving %s %s (request %s)", method, path, request_id)
        response = http.internal_error_response()
    # Platform CORS cannot expose headers, so a browser app reads these only thanks to this.
    response.headers["Access-Control-Expose-Headers"] = http.EXPOSED_HEADERS
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
    if not op.db:
        path, body, query = _inputs(op, req)
        return _serialise(op, op.handler(Request(req, request_id, body, query), **path))
    if issubclass(op.signature.request_type, SlowUserRequest):
        return _run_slow(op, req, request_id)
    token = _bearer_token(req) if op.auth else None  # refused before touching the database
    account: list[uuid.UUID] = []  # the caller's, once known (for _unit_of_work)
    with _unit_of_work(account) as session:
        caller = _authenticate(session, token) if token is not None else None
        path, body, query = _inputs(op, req)
        if caller is None:
            request: DbRequest[Any, Any] = DbRequest(req, request_id, body, query, session)
        else:
            account.append(caller.user.id)
            request = UserRequest(req, request_id, body, query, session, caller)
        return _serialise(op, op.handler(request, **path))


def _run_slow(op: Operation, req: func.HttpRequest, request_id: str) -> func.HttpResponse:
    """As `_run`, but the handler runs outside any unit of work (see the module's doc)."""
    token = _bearer_token(req)
    with _unit_of_work([]) as session:
        caller = _authenticate(session, token)
    path, body, query = _inputs(op, req)
    account = [caller.user.id]  # each of the handler's units of work knows its caller
    request = SlowUserRequest(
        req, request_id, body, query, caller, functools.partial(_unit_of_work, account)
    )
    return _serialise(op, op.handler(request, **path))


def _authenticate(session: Session, token: str) -> Caller:
    from api.services.auth import authenticate

    return authenticate(session=session, token=token)


def _inputs(
    op: Operation, req: func.HttpRequest
) -> tuple[dict[str, object], BaseModel | None, BaseModel | None]:
    """The route values, body and query, validated in that order."""
    path = _path_values(op, req.route_params)
    query = _validate(op.query, dict(req.params), "query") if op.query else None
    body = _parse_body(op, op.body, req) if op.body else None
    return path, body, query


# SQLSTATEs of a write that lost a race with its account's deletion: a row referring to
# the deleted user, or a deadlock with the deletion's cascade.
FOREIGN_KEY_VIOLATION, DEADLOCK_DETECTED = "23503", "40P01"


@contextmanager
def _unit_of_work(account: list[uuid.UUID]) -> Iterator[Session]:
    """The invocation's session (see `api.db.session_scope`), with database failures a
    client can act on made into their answers:

    - a write that lost a race with the deletion of the caller's own account (`account`
      holds its id once authenticated) — a foreign key to the deleted user, an UPDATE whose
      row the deletion's cascade removed, a deadlock with it — is a 401 `account_deleted`
      once the account is found gone, not a 500; a row another request deleted meanwhile
      is a 404;
    - no pooled connection free in time, the database gone mid-request, or a deadlock
      otherwise: the client can retry, so a 503, not a bug's 500.
    """
    from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError
    from sqlalchemy.orm.exc import StaleDataError

    from api.db import session_scope

    try:
        with session_scope() as session:
            yield session
    except (DBAPIError, StaleDataError) as error:
        if account and _lost_to_deletion(error):
            _hold_account(account[0])  # 401 account_deleted when it is gone
        if isinstance(error, StaleDataError):  # deleted by another request meanwhile
            raise NotFoundError("What this request changes was deleted meanwhile") from None
        if not isinstance(error, OperationalError):
            raise
        _database_unavailable()
    except TimeoutError:
        _database_unavailable()


def _lost_to_deletion(error: Exception) -> bool:
    """A failure a concurrent deletion causes: an UPDATE or DELETE that found its row gone
    (StaleDataError, which carries no SQLSTATE), a row referring to a deleted one, a
    deadlock with the deletion's cascade."""
    from sqlalchemy.orm.exc import StaleDataError

    sqlstate = getattr(getattr(error, "orig", None), "sqlstate", None)
    return isinstance(error, StaleDataError) or sqlstate in (
        FOREIGN_KEY_VIOLATION,
        DEADLOCK_DETECTED,
    )


def _hold_account(user_id: uuid.UUID) -> None:
    """401 `account_deleted` once the account is found gone (its row lock makes the check
    wait for a deletion in progress), in a transaction of its own: the request's failed.
    When the database cannot even answer that, the original failure is answered instead."""
    from sqlalchemy.exc import DBAPIError, TimeoutError

    from api.db import session_scope
    from api.services.auth import hold_account

    try:
        with session_scope() as session:
            hold_account(session=session, user_id=user_id)
    except (DBAPIError, TimeoutError):
        log.warning("Could not check whether the caller's account still exists", exc_info=True)


def _database_unavailable() -> NoReturn:
    log.warning("Database unavailable during a request", exc_info=True)
    raise ServiceUnavailableError(
        "The database is busy or unreachable; try again shortly", code="database_unavailable"
    ) from None


def _path_values(op: Operation, raw: dict[str, str]) -> dict[str, object]:
    """Re-check route values in Python: the host checks nothing, and a malformed id must
    look exactly like one that does not exist."""
    values: dict[str, object] = {}
    for name, declared in op.path_params.items():
        try:
            values[name] = PATH_TYPES[declared](raw[name])
        except (KeyError, ValueError):
            raise NotFoundError(f"No such {name.removesuffix('_id')}") from None
    return values


def _bearer_token(req: func.HttpRequest) -> str:
    scheme, _, token = (req.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("Send an access token as 'Authorization: Bearer <token>'")
    return token.strip()


def media_type(req: func.HttpRequest) -> str:
    return (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()


def _parse_body(op: Operation, model: type[BaseModel], req: func.HttpRequest) -> BaseModel:
    raw = req.get_body() or b""
    if not raw and not op.body_required:
        return _validate(model, {}, "body")
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
    if _too_many_json_items(raw):
        raise PayloadTooLargeError(
            f"The JSON body holds more than {MAX_JSON_ITEMS} keys and values",
            code="too_many_json_items",
        )
    try:
        data = json.loads(raw)
    # RecursionError: nesting deeper than the parser can follow, not a bug of ours.
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        where = (
            f" (line {exc.lineno}, column {exc.colno})"
            if isinstance(exc, json.JSONDecodeError)
            else ""
        )
        raise BadRequestError(
            f"The request body is not valid JSON{where}", code="malformed_json"
        ) from None
    return _validate(model, data, "body")


def _too_many_json_items(raw: bytes) -> bool:
    """Does the body have more than MAX_JSON_ITEMS containers and separators outside its
    strings? Counted without parsing, stopping at the limit; a body with fewer such bytes
    anywhere (strings included: Base64 has none) needs no scan."""
    if sum(raw.count(byte) for byte in (b"[", b"{", b",", b":")) <= MAX_JSON_ITEMS:
        return False
    items = (match for match in _JSON_ITEM.finditer(raw) if match.group(1))
    return next(islice(items, MAX_JSON_ITEMS, None), None) is not None


def _validate(model: type[BaseModel], data: object, where: str) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailedError(
            [
                FieldError(loc=[where, *error["loc"]], message=error["msg"], type=error["type"])
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None


def _serialise(op: Operation, result: object) -> func.HttpResponse:
    if isinstance(result, func.HttpResponse):
        return result
    reply = result if isinstance(result, Reply) else Reply(body=result)
    status = reply.status or op.status
    if reply.body is None:
        return func.HttpResponse(status_code=status, headers=reply.headers)
    body = reply.body
    if op.response_adapter is not None:
        body = op.response_adapter.dump_python(
            op.response_adapter.validate_python(body, from_attributes=True),
            mode="json",
            by_alias=True,
        )
    elif isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    return http.json_response(body, status=status, headers=reply.headers)
