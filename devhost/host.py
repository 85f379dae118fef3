"""A WSGI application that serves an `azure.functions.FunctionApp` like the Functions host.

Core Tools cannot be installed on our machines, so this is the local stand-in: it indexes the
app once (as the Python worker does), answers CORS as the host does (see `cors`), routes
requests with the host's rules (see `routing`), turns WSGI requests into `func.HttpRequest`
exactly as the host hands them to the worker, and `func.HttpResponse` back into WSGI.

Responses the host makes itself have no body, as on Azure (Azure/azure-functions-host
v4.1037.0, commit 89dc438): a path no route matches, or a known route with a method it does
not declare, is an empty 404 (ASP.NET Core's end of pipeline, and
src/WebJobs.Script.WebHost/Middleware/FunctionInvocationMiddleware.cs `NotFoundResult`); a
function that fails is an empty 500 (Middleware/ExceptionMiddleware.cs).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit
from wsgiref.types import StartResponse, WSGIEnvironment
from wsgiref.util import application_uri, is_hop_by_hop

import azure.functions as func
from azure.functions.decorators.core import Binding
from azure.functions.decorators.function_app import Function

from devhost.cors import HostCors
from devhost.invocation import invocation_context
from devhost.routing import Route, Router, check_reserved, compile_template
from devhost.settings import DEFAULT_ROUTE_PREFIX

logger = logging.getLogger(__name__)

Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class HttpFunction:
    """One HTTP-triggered function, as indexed at start-up."""

    name: str
    route: str  # full route template, including the route prefix
    methods: tuple[str, ...] | None  # declaration order; None means every method
    binding_name: str  # the keyword argument the request is passed as (e.g. "req")
    handler: Callable[..., Any]
    takes_context: bool = False  # a `context` parameter: passed the invocation context


class FunctionHost:
    """The WSGI callable returned by `create_app`; `functions` lists what it serves."""

    def __init__(self, functions: tuple[HttpFunction, ...], cors: HostCors) -> None:
        self.functions = functions
        self._cors = cors
        self._router = Router(
            Route(
                name=function.name,
                template=compile_template(function.route),
                methods=None if function.methods is None else frozenset(function.methods),
                target=function,
            )
            for function in functions
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = _request_path(environ)
        headers = _request_headers(environ)
        if self._cors.is_preflight(method, headers):
            return _send_empty(
                start_response, HTTPStatus.NO_CONTENT, self._cors.preflight_headers(headers)
            )
        cors = self._cors.response_headers(headers)
        match = self._router.resolve(method, path)
        if match is None:
            return _send_empty(start_response, HTTPStatus.NOT_FOUND, cors)
        request = _to_http_request(environ, method, path, headers, match.values)
        response = _invoke(match.target, request)
        if response is None:
            return _send_empty(start_response, HTTPStatus.INTERNAL_SERVER_ERROR, cors)
        return _send(response, start_response, cors)


def create_app(
    function_app: func.FunctionApp,
    *,
    route_prefix: str = DEFAULT_ROUTE_PREFIX,
    cors: HostCors | None = None,
) -> FunctionHost:
    """Index `function_app` once and return a WSGI app serving its HTTP functions.

    `route_prefix` is host.json's `extensions.http.routePrefix` ("" serves from the root);
    `cors` defaults to the policy of the environment's CORS_ALLOWED_ORIGINS, as the host
    reads it. Functions without an HTTP trigger are skipped, as they have no URL. Routes the
    host would refuse, or that devhost cannot route as the host does, raise
    `routing.RouteTemplateError` here rather than at the first request.
    """
    prefix = route_prefix.strip("/")
    functions = tuple(
        _index(function, trigger, prefix)
        for function in function_app.get_functions()
        for trigger in function.get_bindings()
        if trigger.type == "httpTrigger"
    )
    return FunctionHost(functions, HostCors.from_environment() if cors is None else cors)


def _index(function: Function, trigger: Binding, prefix: str) -> HttpFunction:
    # The SDK names a function after its Python function unless told otherwise.
    handler = function.get_user_function()
    name = function.get_function_name() or handler.__name__
    # getattr: the attributes exist on HttpTrigger and on generic "httpTrigger" bindings alike.
    declared_route: str | None = getattr(trigger, "route", None)
    methods: Iterable[func.HttpMethod | str] | None = getattr(trigger, "methods", None)
    # The host uses the function name when no route is given. Surrounding slashes are
    # tolerated because the SDK itself registers "/{*route}" for its ASGI/WSGI adapters.
    route = (name if declared_route is None else declared_route).strip("/")
    check_reserved(route)
    return HttpFunction(
        name=name,
        route="/".join(part for part in (prefix, route) if part),
        methods=None if methods is None else tuple(_method_name(m) for m in methods),
        binding_name=trigger.name,
        handler=handler,
        # As the worker decides it (functions.py, is_context_required).
        takes_context="context" in inspect.signature(handler).parameters
        and trigger.name != "context",
    )


def _method_name(method: func.HttpMethod | str) -> str:
    return method.value if isinstance(method, func.HttpMethod) else method.upper()


def _wsgi_to_text(value: str) -> str:
    """Undo PEP 3333's latin-1 transport encoding of URL text, which is really UTF-8.

    Servers such as waitress follow PEP 3333; httpx's WSGITransport passes real text instead,
    which does not survive the round trip and is then already right.
    """
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


# An encoded slash, which Kestrel leaves encoded in the path it routes on.
_ENCODED_SLASH = re.compile("(%2[Ff])")


def _request_path(environ: WSGIEnvironment) -> str:
    """The path as Kestrel hands it to the host's routing: percent-decoded except `%2F`,
    which stays as sent (ASP.NET Core's UrlDecoder, `SkipUnescape`), so an encoded slash
    never splits a segment: `vehicles/a%2Fb` is one route value, `a%2Fb` (ASP.NET Core
    routing does not decode route values further; the host passes them to the worker as
    they are: src/WebJobs.Script.Grpc/MessageExtensions/GrpcMessageConversionExtensions.cs,
    `PopulateHttpRouteDataAsParams`). Read from the raw request target when the server
    gives it (waitress: REQUEST_URI); otherwise PATH_INFO, already fully decoded (httpx's
    WSGITransport keeps no raw target)."""
    raw = environ.get("REQUEST_URI")
    if not raw:
        return _wsgi_to_text(environ.get("PATH_INFO", ""))
    pieces = _ENCODED_SLASH.split(urlsplit(raw).path)
    return "".join(piece if _ENCODED_SLASH.fullmatch(piece) else unquote(piece) for piece in pieces)


def _to_http_request(
    environ: WSGIEnvironment,
    method: str,
    path: str,
    headers: dict[str, str],
    route_params: dict[str, str],
) -> func.HttpRequest:
    query = _wsgi_to_text(environ.get("QUERY_STRING", ""))
    # Quoted around the encoded slashes the path kept, which stay as they are.
    quoted = "".join(
        piece if _ENCODED_SLASH.fullmatch(piece) else quote(piece)
        for piece in _ENCODED_SLASH.split(path)
    )
    url = application_uri(environ).rstrip("/") + quoted + (f"?{query}" if query else "")
    return func.HttpRequest(
        method=method,
        url=url,
        headers=headers,
        params=query_params(query),
        route_params=route_params,
        body=_read_body(environ, headers),
    )


def query_params(query: str) -> dict[str, str]:
    """The query as the host hands it to the Python worker.

    Azure/azure-functions-host v4.1037.0, src/WebJobs.Script.Grpc/MessageExtensions/
    GrpcMessageConversionExtensions.cs (`ToRpcHttp`) passes each of ASP.NET Core's query
    entries as `StringValues.ToString()`, which joins repeated values with commas and skips
    blank ones, and leaves out an entry whose value is then blank (the Python worker 4.34
    does not ask for the nullable form). ASP.NET Core's query collection groups names
    ignoring case, keeping the first spelling. So `limit=5&limit=10` arrives as "5,10",
    `q=` not at all.
    """
    grouped: dict[str, list[str]] = {}
    spellings: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        grouped.setdefault(spellings.setdefault(name.upper(), name), []).append(value)
    joined = {
        name: ",".join(value for value in values if value) for name, values in grouped.items()
    }
    return {name: value for name, value in joined.items() if value}


def _request_headers(environ: WSGIEnvironment) -> dict[str, str]:
    headers = {
        key.removeprefix("HTTP_").replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    headers["x-forwarded-for"] = _forwarded_for(headers.get("x-forwarded-for"), environ)
    return headers


def _forwarded_for(sent: str | None, environ: WSGIEnvironment) -> str:
    """X-Forwarded-For as Azure's front end passes it on: the connection's address and port
    appended to whatever the client sent (see api.utils.http.client_address)."""
    address = environ.get("REMOTE_ADDR") or "127.0.0.1"
    port = environ.get("REMOTE_PORT")
    hop = f"[{address}]" if ":" in address else address
    hop = f"{hop}:{port}" if port else hop
    return f"{sent}, {hop}" if sent else hop


def _read_body(environ: WSGIEnvironment, headers: Mapping[str, str]) -> bytes:
    """The body as the host hands it to the worker: only when the request declares a
    Content-Length above 0 (`ToRpcHttp`: `request.ContentLength > 0`). A chunked upload has
    none, so its function sees an empty body, as on Azure (`devhost.server` keeps the
    Transfer-Encoding header that waitress would otherwise hide)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return b""
    length = environ.get("CONTENT_LENGTH", "")
    if length.isascii() and length.isdigit():
        body: bytes = environ["wsgi.input"].read(int(length))
        return body
    return b""


def _invoke(function: HttpFunction, request: func.HttpRequest) -> func.HttpResponse | None:
    """Call the function; None when it failed (the host then answers an empty 500).

    The traceback goes to the log only: the app translates its own errors, this is just the
    safety net, and exception text must never reach clients.
    """
    arguments: dict[str, Any] = {function.binding_name: request}
    if function.takes_context:
        arguments["context"] = invocation_context(function.name, request.headers)
    try:
        result = function.handler(**arguments)
        if inspect.iscoroutine(result):  # the worker runs async functions on an event loop
            result = asyncio.run(result)
        if not isinstance(result, func.HttpResponse):
            raise TypeError(f"returned {type(result).__name__}, expected func.HttpResponse")
    except Exception:
        logger.exception("Executed '%s' (Failed)", function.name)
        return None
    return result


def _send_empty(start_response: StartResponse, status: HTTPStatus, headers: Headers) -> list[bytes]:
    """A response the host makes itself: no body, no Content-Type."""
    start_response(_status_line(status), [*headers, ("Content-Length", "0")])
    return [b""]


def _send(response: func.HttpResponse, start_response: StartResponse, cors: Headers) -> list[bytes]:
    body = response.get_body() or b""
    # The host sets these itself: WSGI servers reject hop-by-hop headers from applications
    # (PEP 3333), a Content-Length that disagrees with the body would break the connection,
    # and the host's CORS layer replaces a function's Access-Control-Allow-Origin.
    replaced = {name.lower() for name, _ in cors if name.lower() != "vary"} | {"content-length"}
    headers = [
        (name, value)
        for name, value in response.headers.items()
        if not is_hop_by_hop(name) and name.lower() not in replaced
    ]
    if "content-type" not in response.headers:
        headers.append(("Content-Type", _content_type(response)))
    headers += [*cors, ("Content-Length", str(len(body)))]
    start_response(_status_line(response.status_code), headers)
    return [body]


def _content_type(response: func.HttpResponse) -> str:
    """Content-Type from mimetype/charset, exactly as the worker's HTTP converter builds it."""
    if response.mimetype.startswith("text/"):
        return f"{response.mimetype}; charset={response.charset}"
    return str(response.mimetype)


def _status_line(status_code: int) -> str:
    try:
        return f"{status_code} {HTTPStatus(status_code).phrase}"
    except ValueError:  # a code http.HTTPStatus does not know, e.g. 499
        return f"{status_code} Unknown"
