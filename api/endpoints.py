"""Declaring HTTP operations once: routing, parsing, auth, sessions, errors, OpenAPI.

Each area has a `Router`; handlers are plain functions decorated with `router.operation(...)`.
A handler's signature is its contract, read once at registration:

- its first parameter is the request, typed `Request`, `DbRequest`, `UserRequest`,
  `ReadRequest`, `SlowUserRequest` or `SlowRequest` (no database; a session; a session and
  the authenticated caller; for a GET, the caller as read and a `Reader` instead of a
  session; the caller and a unit-of-work factory instead of a session; that factory
  without a caller), subscripted with the body and query models to validate:
  `UserRequest[VehicleCreate]`, `ReadRequest[None, Pagination]` (left out, a model is None
  and nothing is read);
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
raises. A `ReadRequest` handler (a GET) reads through `request.reader` instead
(`api.db.read_scope`: statements compiled once, on a pooled connection, no session and no
ORM) and gets the caller as read (`api.services.auth.Account`): a list or a lookup costs
its statements and little else. A handler that waits on something slow — the AI provider,
for up to DIAGNOSE_DEADLINE_S — must not hold a pooled connection (let alone an open transaction)
meanwhile, so it is declared with `SlowUserRequest`: the caller is authenticated in a unit
of work of its own that is closed before the handler runs, and the handler passes
`request.unit_of_work` to its service, which opens one short unit of work per step
(`with unit_of_work() as session:`), each committed or rolled back on its own, and each
on a connection tried first (`api.db.session_scope(checked=True)`: it cannot be run again
once the slow part is done). One without an access token that computes something slow (a
login's bcrypt) is a `SlowRequest`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property, partial
from itertools import islice
from typing import (
    TYPE_CHECKING,
    Annotated,
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
from pydantic_core import from_json
from typing_extensions import TypeVar as DefaultTypeVar

from api.errors import (
    AppError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FieldError,
    LengthRequiredError,
    NotFoundError,
    PayloadTooLargeError,
    ServiceUnavailableError,
    UnsupportedMediaTypeError,
    ValidationFailedError,
)
from api.functions import add_function
from api.settings import get_settings
from api.utils import http

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from api.db import Reader, UnitOfWork
    from api.models import User
    from api.services.auth import Account, Caller
    from api.services.idempotency import Idempotency, Key, StoredResponse
    from api.services.listing import Listing

log = logging.getLogger("api.http")

JSON = "application/json"
MULTIPART = "multipart/form-data"
# A route is literal segments and whole-segment `{name}` parameters: exactly the forms the
# Functions host and devhost match the same way (no constraints, optional or catch-all
# parameters; a parameter's type is its handler parameter's annotation).
_LITERAL_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")
_PARAMETER_SEGMENT = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# What a route parameter may be declared as, and how its text becomes that; a parameter may
# also be an `Annotated[str, ...]` pydantic type (e.g. a pattern), checked as the body is.
PATH_TYPES: dict[type, Callable[[str], object]] = {uuid.UUID: uuid.UUID, str: str}
# Methods that change nothing: their requests need not hold the caller's account.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
# The published key format (draft-ietf-httpapi-idempotency-key-header-07 asks for one): an
# sf-string ("...", as the draft writes it) or the bare value (as Stripe's clients send it),
# 8-255 characters of letters, digits and -._~:+/= (a UUID, a ULID, Base64 fit).
_IDEMPOTENCY_KEY = re.compile(r'(")?([A-Za-z0-9\-._~:+/=]{8,255})(?(1)")')
# How long a request of the one-transaction kind may own its key: nobody else sees the key
# before that transaction commits, by which time the response is stored.
REQUEST_RUNNING = timedelta(minutes=1)
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
ResultT = TypeVar("ResultT")


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
class ReadRequest(Request[BodyT, QueryT]):
    """A GET with a valid access token served without a session (`api.db.read_scope`):
    `reader` runs the statements built for it, `caller` is the account as read; without a
    token the handler never runs (401)."""

    reader: Reader
    caller: Caller[Account]

    @property
    def user(self) -> Account:
        return self.caller.user


@dataclass(frozen=True)
class SlowUserRequest(Request[BodyT, QueryT]):
    """A request with a valid access token whose handler waits on something slow, so it
    holds no database connection: `caller` was authenticated in a unit of work already
    closed, and `unit_of_work()` opens a short one (committed when its block ends, rolled
    back when it raises) each time the handler's service needs the database."""

    caller: Caller
    unit_of_work: UnitOfWork
    # The request's Idempotency-Key, when the operation is idempotent and the client sent
    # one: the service claims it in its first unit of work and stores the response in its
    # last (see api/services/idempotency.py); a handler result becomes a response with
    # `render`.
    idempotency: Idempotency[Any] | None = None

    @property
    def user(self) -> User:
        return self.caller.user


@dataclass(frozen=True)
class SlowRequest(Request[BodyT, QueryT]):
    """A request without an access token whose handler computes something slow (a login's
    bcrypt check: a quarter of a second of CPU), so it holds no database connection
    meanwhile: `unit_of_work()` opens a short one each time its service needs the
    database."""

    unit_of_work: UnitOfWork


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
    path_params: dict[str, Any]  # name -> declared type, in route order
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
    response_files: tuple[str, ...]  # binary success bodies of these media types (ranges)
    response_headers: tuple[str, ...]  # sent with the success response (documented)
    body_required: bool
    # Takes an Idempotency-Key (api/services/idempotency.py): a retry gets the first answer.
    idempotent: bool
    request_headers: tuple[str, ...]  # request headers it reads (documented)
    error_headers: dict[int, tuple[str, ...]]  # headers of some error responses (documented)

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
    def path_params(self) -> dict[str, Any]:
        return self.signature.path_params

    @property
    def auth(self) -> bool:
        return issubclass(self.signature.request_type, UserRequest | ReadRequest | SlowUserRequest)

    @property
    def db(self) -> bool:
        return issubclass(
            self.signature.request_type, DbRequest | ReadRequest | SlowUserRequest | SlowRequest
        )

    @property
    def read_only(self) -> bool:
        """A GET in one unit of work: it writes nothing (api.db refuses a flush; a
        `ReadRequest` has nothing to write with), so it runs without a transaction and may
        be served again on a fresh connection."""
        return self.method == "GET" and issubclass(
            self.signature.request_type, DbRequest | ReadRequest
        )

    @cached_property
    def response_adapter(self) -> TypeAdapter[Any] | None:
        return TypeAdapter(self.response) if self.response is not None else None

    @cached_property
    def page_item_fields(self) -> dict[str, str] | None:
        """For a `Page` response whose item model sends its fields as they are (no
        validators, serialisers or computed fields): each item field's name -> the key it is
        sent as, in the model's order; else None. A page of our own table rows is sent
        from these without being validated first (see `_serialise`)."""
        from api.schemas.common import Page

        if self.response is None or not issubclass(self.response, Page):
            return None
        (item,) = get_args(self.response.model_fields["items"].annotation)
        if not (isinstance(item, type) and issubclass(item, BaseModel)):
            return None
        decorators = item.__pydantic_decorators__  # validators, serialisers, computed fields
        if any(getattr(decorators, kind.name) for kind in dataclasses.fields(decorators)) or any(
            field.metadata for field in item.model_fields.values()
        ):
            return None
        return {
            name: field.serialization_alias or field.alias or name
            for name, field in item.model_fields.items()
        }

    @cached_property
    def path_adapters(self) -> dict[str, TypeAdapter[Any]]:
        """The route parameters declared with a pydantic type (see PATH_TYPES)."""
        return {
            name: TypeAdapter(declared)
            for name, declared in self.path_params.items()
            if not isinstance(declared, type)  # Annotated[str, ...]
        }


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
        response_files: tuple[str, ...] = (),
        response_headers: tuple[str, ...] = (),
        body_required: bool = True,
        idempotent: bool = False,
        request_headers: tuple[str, ...] = (),
        error_headers: dict[int, tuple[str, ...]] | None = None,
    ) -> Callable[[HandlerT], HandlerT]:
        """Register the decorated handler for `method` on `route`: what it takes and answers
        is read from its signature (see the module's doc); `response` is the model results
        are validated into; `errors`, the statuses it may answer beyond the ones every
        operation of its kind can; `form`, a multipart/form-data body beside the JSON one;
        `response_headers`, the headers its success response carries (for the document);
        `response_files`, the media types (or ranges, `image/*`) of a binary success body.
        `body_required=False`: an empty body (no bytes) reads as `{}`, for bodies whose
        fields are all optional. `idempotent`: an authenticated operation that takes an
        Idempotency-Key (a retry with the same key gets the first response; see
        api/services/idempotency.py). `request_headers` and `error_headers` document the
        headers it reads and those some of its error responses carry. RouteError when the
        declaration cannot be served."""
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
            if idempotent and not issubclass(signature.request_type, UserRequest | SlowUserRequest):
                raise RouteError(f"{where}: an idempotent operation's keys belong to a user")
            if issubclass(signature.request_type, ReadRequest) and method != "GET":
                raise RouteError(f"{where}: a ReadRequest serves a GET (it cannot write)")
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
                    response_files=response_files,
                    response_headers=response_headers,
                    body_required=body_required,
                    idempotent=idempotent,
                    request_headers=request_headers,
                    error_headers=error_headers or {},
                )
            )
            return handler

        return register

    @cached_property
    def routes(self) -> dict[str, dict[str, Operation]]:
        """The operations by route, then method: what each route's function dispatches on
        (read once every handler is declared: when its area is first invoked)."""
        routes: dict[str, dict[str, Operation]] = {}
        for op in self.operations:
            routes.setdefault(op.route, {})[op.method] = op
        return routes

    def blueprint(self) -> func.Blueprint:
        """Its functions, registered at once (a Router already imported; the app's areas
        are indexed from their declarations instead: api/functions.py)."""
        blueprint = func.Blueprint()
        for route, by_method in self.routes.items():
            add_function(blueprint, route, by_method, partial(dispatch, by_method=by_method))
        return blueprint


def _read_signature(handler: Callable[..., object], route: str, where: str) -> Signature:
    """The handler's declaration, or RouteError naming what is wrong with it."""
    hints = get_type_hints(handler, include_extras=True)
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
    path_params: dict[str, Any] = {}
    for parameter in others:
        declared = hints.get(parameter.name)
        constrained_text = get_origin(declared) is Annotated and get_args(declared)[0] is str
        if not (constrained_text or (isinstance(declared, type) and declared in PATH_TYPES)):
            raise RouteError(
                f"{where}: type {parameter.name!r} as uuid.UUID, str or Annotated[str, ...]"
            )
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
            f"{where}: the first parameter must be typed Request, DbRequest, UserRequest, "
            "ReadRequest, SlowUserRequest or SlowRequest"
        )
    body, query = [_model(arg, where) for arg in get_args(hint)] or [None, None]
    return request_type, body, query


def _model(arg: object, where: str) -> type[BaseModel] | None:
    if arg is None or arg is type(None):
        return None
    if isinstance(arg, type) and issubclass(arg, BaseModel):
        return arg
    raise RouteError(f"{where}: a request's body and query are pydantic models (or None)")


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
    # (Looked up in one pass: a werkzeug lookup of a missing header raises and catches.)
    present = {name.lower() for name, _ in response.headers}
    for name, value in (("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")):
        if name.lower() not in present:
            response.headers[name] = value
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
        inputs = _inputs(op, req)
        request = Request(req, request_id, inputs.body, inputs.query)
        return _serialise(op, op.handler(request, **inputs.path))
    if issubclass(op.signature.request_type, SlowUserRequest):
        return _run_slow(op, req, request_id)
    if issubclass(op.signature.request_type, SlowRequest):
        inputs = _inputs(op, req)
        slow = SlowRequest(
            req, request_id, inputs.body, inputs.query, partial(_unit_of_work, [], checked=True)
        )
        return _serialise(op, op.handler(slow, **inputs.path))
    serve = (
        _run_read if issubclass(op.signature.request_type, ReadRequest) else _run_in_unit_of_work
    )
    return _again_if_stale(partial(serve, op, req, request_id))


def _run_read(op: Operation, req: func.HttpRequest, request_id: str) -> func.HttpResponse:
    """A `ReadRequest`: as `_run_in_unit_of_work`, on a `Reader` (see the module's doc)."""
    from api.db import read_scope
    from api.services.auth import authenticate_read

    token = _bearer_token(req)  # refused before touching the database
    account: list[uuid.UUID] = []
    with _database_errors(account, read_only=True), read_scope() as reader:
        caller = authenticate_read(reader=reader, token=token)
        account.append(caller.user.id)
        inputs = _inputs(op, req)
        request = ReadRequest(req, request_id, inputs.body, inputs.query, reader, caller)
        return _serialise(op, op.handler(request, **inputs.path))


def _run_in_unit_of_work(
    op: Operation, req: func.HttpRequest, request_id: str
) -> func.HttpResponse:
    token = _bearer_token(req) if op.auth else None  # refused before touching the database
    account: list[uuid.UUID] = []  # the caller's, once known (for _unit_of_work)
    with _unit_of_work(account, read_only=op.read_only) as session:
        writes = req.method.upper() not in SAFE_METHODS
        caller = _authenticate_first(session, token, hold=writes) if token is not None else None
        inputs = _inputs(op, req)
        if caller is not None:
            account.append(caller.user.id)
        request = (
            DbRequest(req, request_id, inputs.body, inputs.query, session)
            if caller is None
            else UserRequest(req, request_id, inputs.body, inputs.query, session, caller)
        )

        def respond() -> func.HttpResponse:
            return _serialise(op, op.handler(request, **inputs.path))

        if caller is not None and inputs.idempotency_key is not None:
            return _once(session, inputs.key_of(caller.user.id), respond)
        return respond()


def _run_slow(op: Operation, req: func.HttpRequest, request_id: str) -> func.HttpResponse:
    """As `_run`, but the handler runs outside any unit of work (see the module's doc)."""
    from api.services.idempotency import Idempotency

    token = _bearer_token(req)
    caller = _again_if_stale(partial(_read_caller, token))
    inputs = _inputs(op, req)
    idempotency = (
        Idempotency(inputs.key_of(caller.user.id), partial(_render, op))
        if inputs.idempotency_key is not None
        else None
    )
    account = [caller.user.id]  # each of the handler's units of work knows its caller
    request = SlowUserRequest(
        req,
        request_id,
        inputs.body,
        inputs.query,
        caller,
        partial(_unit_of_work, account, checked=True),
        idempotency,
    )
    return _serialise(op, op.handler(request, **inputs.path))


def _again_if_stale(serve: Callable[[], ResultT]) -> ResultT:
    """`serve()`, run once more on a fresh connection when it found the server had closed
    its first before anything was written (_StaleConnection); 503 when that fails too."""
    try:
        return serve()
    except _StaleConnection:
        log.info("A pooled connection was closed by the server; serving the request again")
    try:
        return serve()
    except _StaleConnection:
        _database_unavailable()


def _read_caller(token: str) -> Caller:
    """A slow request's caller, read as a GET reads: in a read-only unit of work (on a
    direct connection one statement, no BEGIN or COMMIT), which the server closing its
    connection fails with _StaleConnection, to be read again (nothing was written)."""
    with _unit_of_work([], read_only=True) as session:
        return _authenticate(session, token)


def _once(
    session: Session, key: Key, respond: Callable[[], func.HttpResponse]
) -> func.HttpResponse:
    """An idempotent request of the one-transaction kind: the key, the request's effects and
    its response are committed together. A duplicate arriving meanwhile waits for that
    commit (the database holds it at the key's unique index: milliseconds) and then gets
    the replay; a failure rolls the key back with everything else."""
    from api.models import utcnow
    from api.services import idempotency

    now = utcnow()
    claim = idempotency.claim(
        session=session, key=key, now=now, running_until=now + REQUEST_RUNNING
    )
    if not isinstance(claim, idempotency.Claim):
        return _replayed(claim)
    try:
        response = respond()
    except AppError as error:
        if error.keep_changes:  # its writes are committed, so the key must go explicitly
            idempotency.release(session=session, claim=claim)
        raise
    if response.status_code < 300:
        idempotency.complete(session=session, claim=claim, response=_stored(response))
    else:
        idempotency.release(session=session, claim=claim)
    return response


def _authenticate_first(session: Session, token: str, *, hold: bool) -> Caller:
    """`_authenticate` as a unit of work's first statement: a connection the server had
    closed fails it before anything was written, so the unit of work can run again on a
    fresh one (_StaleConnection) — a write after a database restart is served, not a 503."""
    from sqlalchemy.exc import DBAPIError

    try:
        return _authenticate(session, token, hold=hold)
    except DBAPIError as error:
        if error.connection_invalidated:
            raise _StaleConnection from error
        raise


def _authenticate(session: Session, token: str, *, hold: bool = False) -> Caller:
    from api.services.auth import authenticate

    return authenticate(session=session, token=token, hold=hold)


@dataclass(frozen=True)
class _Inputs:
    """What a request carries, validated: route values, body, query, and the Idempotency-Key
    of an idempotent operation with the request's fingerprint."""

    path: dict[str, object]
    body: BaseModel | None
    query: BaseModel | None
    idempotency_key: str | None = None
    fingerprint: bytes = b""

    def key_of(self, user_id: uuid.UUID) -> Key:
        from api.services.idempotency import Key

        assert self.idempotency_key is not None
        return Key(user_id, self.idempotency_key, self.fingerprint)


def _inputs(op: Operation, req: func.HttpRequest) -> _Inputs:
    """The route values, query, Idempotency-Key and body, validated in that order."""
    path = _path_values(op, req.route_params)
    query = _validate(op.query, dict(req.params), "query") if op.query else None
    key = _idempotency_key(req) if op.idempotent else None
    # The fingerprint that tells a retry from another request under the same key: method,
    # path and body (a form's parts rather than its bytes: see _parse_body).
    digest = (
        hashlib.sha256(f"{req.method.upper()} {urlsplit(req.url).path}\n".encode()) if key else None
    )
    body = _parse_body(op, op.body, req, digest) if op.body else None
    return _Inputs(path, body, query, key, digest.digest() if digest else b"")


def _idempotency_key(req: func.HttpRequest) -> str | None:
    """The Idempotency-Key header's value (None when absent); 422 naming the header when it
    is not of the published format."""
    raw = req.headers.get(IDEMPOTENCY_KEY_HEADER)
    if raw is None:
        return None
    match = _IDEMPOTENCY_KEY.fullmatch(raw.strip())
    if match is None:
        raise ValidationFailedError(
            [
                FieldError(
                    loc=["header", IDEMPOTENCY_KEY_HEADER],
                    message="Send 8-255 letters, digits or -._~:+/= (e.g. a UUID), bare or "
                    'as a quoted string ("...")',
                    type="idempotency_key",
                )
            ]
        )
    return match.group(2)


# SQLSTATEs of a write that lost a race with its account's deletion: a row referring to
# the deleted user, or a deadlock with the deletion's cascade.
FOREIGN_KEY_VIOLATION, DEADLOCK_DETECTED = "23503", "40P01"


class _StaleConnection(Exception):
    """A unit of work found its connection closed by the server (a restart, a failover, an
    idle connection cut) before it wrote anything — a read-only one at any statement, one
    that writes at its first (authenticating its caller) — so it can run again."""


@contextmanager
def _unit_of_work(
    account: list[uuid.UUID], *, read_only: bool = False, checked: bool = False
) -> Iterator[Session]:
    """The invocation's session (see `api.db.session_scope`), with database failures a
    client can act on made into their answers (`_database_errors`)."""
    from api.db import session_scope

    with (
        _database_errors(account, read_only=read_only),
        session_scope(read_only=read_only, checked=checked) as session,
    ):
        yield session


@contextmanager
def _database_errors(account: list[uuid.UUID], *, read_only: bool) -> Iterator[None]:
    """A unit of work's database failures a client can act on, made into their answers:

    - a read-only unit of work whose connection the server had closed: _StaleConnection
      (`_run` serves the request again, on a fresh connection; so does an authenticated
      write whose first statement found it closed: `_authenticate_first`);
    - a request that lost a race with the deletion of the caller's own account (`account`
      holds its id once authenticated) — a foreign key to the deleted user, an UPDATE whose
      row the deletion's cascade removed, a deadlock with it, a 404 or 409 about rows the
      deletion took — is a 401 `account_deleted` once the account is found gone, not a 500,
      404 or 409; a row another request deleted meanwhile is a 404;
    - no pooled connection free in time, the database gone mid-request, or a deadlock
      otherwise: the client can retry, so a 503, not a bug's 500.
    """
    from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError
    from sqlalchemy.orm.exc import StaleDataError

    try:
        yield
    except (NotFoundError, ConflictError):
        # What the request looked for (or conflicted with) may have gone with the account.
        if account:
            _hold_account(account[0])
        raise
    except (DBAPIError, StaleDataError) as error:
        if read_only and isinstance(error, DBAPIError) and error.connection_invalidated:
            raise _StaleConnection from error
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
    look exactly like one that does not exist. A value that is not an id but fails its
    declared constraints (a pattern) is a 422 naming `path.<name>`, like a bad query value."""
    values: dict[str, object] = {}
    for name, declared in op.path_params.items():
        if name in op.path_adapters:
            values[name] = _validate_value(op.path_adapters[name], raw.get(name), ["path", name])
            continue
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


def _parse_body(
    op: Operation,
    model: type[BaseModel],
    req: func.HttpRequest,
    fingerprint: hashlib._Hash | None = None,
) -> BaseModel:
    """The body, validated; `fingerprint` (when given) is fed what the body says: its bytes,
    or a form's parts in order — not its bytes, which differ on every retry by the random
    boundary a client picks each time it encodes the form."""
    if "chunked" in (req.headers.get("Transfer-Encoding") or "").lower():
        # The Functions host hands the worker a body only when Content-Length says one
        # came (devhost/host.py `_read_body`): a chunked one arrives empty, and reading it
        # as "no body" would answer something confusing.
        raise LengthRequiredError("Send the request body with a Content-Length (not chunked)")
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
        form = op.form.parse(req)
        if fingerprint is not None:
            _fingerprint_form(fingerprint, form)
        return _validate(op.form.model, form, "body")
    if _too_many_json_items(raw):
        raise PayloadTooLargeError(
            f"The JSON body holds more than {MAX_JSON_ITEMS} keys and values",
            code="too_many_json_items",
        )
    if fingerprint is not None:
        fingerprint.update(raw)
    try:
        data = _json_body(raw)
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


def _fingerprint_form(fingerprint: hashlib._Hash, form: dict[str, Any]) -> None:
    for name, value in form.items():
        for item in value if isinstance(value, list) else [value]:
            data = item if isinstance(item, bytes) else str(item).encode()
            fingerprint.update(f"{name}\0{len(data)}\0".encode())
            fingerprint.update(data)


def _validate_value(adapter: TypeAdapter[Any], value: object, loc: list[str | int]) -> object:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise ValidationFailedError(
            [
                FieldError(loc=[*loc, *error["loc"]], message=error["msg"], type=error["type"])
                for error in exc.errors(include_url=False, include_input=False)
            ]
        ) from None


def _json_body(raw: bytes) -> object:
    """The body parsed by pydantic-core's parser (jiter), which reads a string of megabytes
    (a diagnosis's Base64) at memory speed, where json.loads first decodes the whole body to
    text and then scans it character by character, about ten times slower. What jiter
    refuses goes to json.loads, which has the last word: it accepts what jiter does not (a
    lone surrogate escape, which the text rule then answers 422; a UTF-8 BOM; nesting past
    jiter's 200 levels), and its errors are the ones the client is told. Whatever both
    accept, both read the same (tests/test_endpoints.py compares them)."""
    try:
        return from_json(raw)
    except ValueError:
        return json.loads(raw)


def _too_many_json_items(raw: bytes) -> bool:
    """Does the body have more than MAX_JSON_ITEMS containers and separators outside its
    strings? Counted without parsing, stopping at the limit; a body with fewer such bytes
    anywhere (strings included: Base64 has none) needs no scan."""
    if _count_bytes(raw, b"[{,:", MAX_JSON_ITEMS) <= MAX_JSON_ITEMS:
        return False
    items = (match for match in _JSON_ITEM.finditer(raw) if match.group(1))
    return next(islice(items, MAX_JSON_ITEMS, None), None) is not None


def _count_bytes(raw: bytes, values: bytes, limit: int) -> int:
    """How many bytes of `raw` are one of `values`, counted up to `limit` + 1. Found with
    `bytes.find` (memchr): a diagnosis's megabytes of Base64, which hold none of them, are
    passed over many times faster than by any pass that looks at each byte in Python's C
    loops (`bytes.count`, `bytes.translate`)."""
    count = 0
    for value in values:
        at = raw.find(value)
        while at != -1:
            count += 1
            if count > limit:
                return count
            at = raw.find(value, at + 1)
    return count


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
    from api.services.listing import Listing

    if isinstance(result, func.HttpResponse):
        return result
    reply = result if isinstance(result, Reply) else Reply(body=result)
    if op.idempotent:  # only these replay a stored response (and import what stores them)
        from api.services.idempotency import StoredResponse

        if isinstance(reply.body, StoredResponse):
            return _replayed(reply.body, reply.headers)
    status = reply.status or op.status
    if reply.body is None:
        return func.HttpResponse(status_code=status, headers=reply.headers)
    body = reply.body
    if isinstance(body, Listing) and body.columns and op.page_item_fields is not None:
        return http.encoded_json_response(
            _page_of_rows(body, body.columns, op.page_item_fields),
            status=status,
            headers=reply.headers,
        )
    if op.response_adapter is not None:
        body = op.response_adapter.dump_python(
            op.response_adapter.validate_python(body, from_attributes=True),
            mode="json",
            by_alias=True,
        )
    elif isinstance(body, BaseModel):
        body = body.model_dump(mode="json")
    return http.json_response(body, status=status, headers=reply.headers)


def _page_of_rows(page: Listing[Any], columns: tuple[str, ...], fields: dict[str, str]) -> bytes:
    """The `{items, total}` JSON of a page of rows read from our own tables, without
    validating them into models first (a third of a listing's time): validation guards what
    a client sends, while these values were typed by the database (uuid, text, date,
    timestamptz, NOT NULL where the model says so). orjson encodes them (UUIDs and
    timestamps about three times as fast as pydantic-core) to the bytes the model's
    serialiser writes — UTC as `Z`, microseconds when there are any, text as UTF-8 —
    which tests/routes/test_vehicles.py compares; the OpenAPI conformance tests check every
    response against its schema."""
    import orjson

    positions = [(key, columns.index(name)) for name, key in fields.items()]
    items = [{key: row[at] for key, at in positions} for row in page.items]
    return orjson.dumps({"items": items, "total": page.total}, option=orjson.OPT_UTC_Z)


REPLAYED_HEADER = "Idempotent-Replayed"


def _stored(response: func.HttpResponse) -> StoredResponse:
    """A response as kept for replays: status, the headers its handler set, body."""
    from api.services.idempotency import StoredResponse

    headers = {
        name: value for name, value in response.headers.items() if name.lower() != "content-type"
    }
    headers["Content-Type"] = response.headers.get("Content-Type") or response.mimetype
    return StoredResponse(response.status_code, headers, response.get_body())


def _render(op: Operation, result: object) -> StoredResponse:
    """What a slow handler's result is sent as, for its service to keep (see `_run_slow`)."""
    return _stored(_serialise(op, result))


def _replayed(stored: StoredResponse, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A response sent again for a retried Idempotency-Key, with `headers` that are fresh
    (e.g. the quota now) and `Idempotent-Replayed: true` (as Stripe says it)."""
    kept = dict(stored.headers)
    content_type = kept.pop("Content-Type", None)
    response = func.HttpResponse(
        stored.body, status_code=stored.status, headers=kept, mimetype=content_type
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    response.headers[REPLAYED_HEADER] = "true"
    return response
