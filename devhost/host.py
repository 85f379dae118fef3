"""A WSGI application that serves an `azure.functions.FunctionApp` like the Functions host.

Core Tools cannot be installed on our machines, so this is the local stand-in: it indexes the
app once (as the Python worker does), routes requests with the host's rules (see `routing`),
turns WSGI requests into `func.HttpRequest` and `func.HttpResponse` back into WSGI. Responses
the host itself makes (404, 405, 500) are problem+json with an `X-Request-ID`, so clients see
the same shape as from the app's own errors.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote
from wsgiref.types import StartResponse, WSGIEnvironment
from wsgiref.util import application_uri, is_hop_by_hop

import azure.functions as func
from azure.functions.decorators.core import Binding
from azure.functions.decorators.function_app import Function

from devhost.invocation import invocation_context
from devhost.routing import MethodNotAllowed, Route, Router, compile_template

logger = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PROBLEM_JSON = "application/problem+json"


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

    def __init__(self, functions: tuple[HttpFunction, ...]) -> None:
        self.functions = functions
        self._router = Router(
            Route(
                template=compile_template(function.route),
                methods=None if function.methods is None else frozenset(function.methods),
                target=function,
            )
            for function in functions
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> list[bytes]:
        method = environ["REQUEST_METHOD"].upper()
        path = _wsgi_to_text(environ.get("PATH_INFO", ""))
        resolution = self._router.resolve(method, path)
        if resolution is None:
            response = _problem(environ, HTTPStatus.NOT_FOUND, f"No route matches {path}")
        elif isinstance(resolution, MethodNotAllowed):
            response = _problem(
                environ, HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}"
            )
            response.headers["Allow"] = ", ".join(resolution.allowed)
        else:
            request = _to_http_request(environ, method, path, resolution.values)
            response = _invoke(resolution.target, request, environ)
        return _send(response, start_response)


def create_app(function_app: func.FunctionApp, *, route_prefix: str = "api") -> FunctionHost:
    """Index `function_app` once and return a WSGI app serving its HTTP functions.

    `route_prefix` is host.json's `extensions.http.routePrefix` ("" serves from the root).
    Functions without an HTTP trigger are skipped, as they have no URL. Invalid routes raise
    `routing.RouteTemplateError` here rather than at the first request.
    """
    prefix = route_prefix.strip("/")
    functions = tuple(
        _index(function, trigger, prefix)
        for function in function_app.get_functions()
        for trigger in function.get_bindings()
        if trigger.type == "httpTrigger"
    )
    return FunctionHost(functions)


def _index(function: Function, trigger: Binding, prefix: str) -> HttpFunction:
    name = function.get_function_name()
    # getattr: the attributes exist on HttpTrigger and on generic "httpTrigger" bindings alike.
    declared_route: str | None = getattr(trigger, "route", None)
    methods: Iterable[func.HttpMethod | str] | None = getattr(trigger, "methods", None)
    # The host uses the function name when no route is given. Surrounding slashes are
    # tolerated because the SDK itself registers "/{*route}" for its ASGI/WSGI adapters.
    route = (name if declared_route is None else declared_route).strip("/")
    handler = function.get_user_function()
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


def _to_http_request(
    environ: WSGIEnvironment, method: str, path: str, route_params: dict[str, str]
) -> func.HttpRequest:
    query = _wsgi_to_text(environ.get("QUERY_STRING", ""))
    url = application_uri(environ).rstrip("/") + quote(path) + (f"?{query}" if query else "")
    return func.HttpRequest(
        method=method,
        url=url,
        headers=_request_headers(environ),
        # Azure keeps the last value of a repeated query parameter.
        params=dict(parse_qsl(query, keep_blank_values=True)),
        route_params=route_params,
        body=_read_body(environ),
    )


def _request_headers(environ: WSGIEnvironment) -> dict[str, str]:
    headers = {
        key.removeprefix("HTTP_").replace("_", "-").lower(): value
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    return headers


def _read_body(environ: WSGIEnvironment) -> bytes:
    """Read exactly Content-Length bytes, or everything when the server marks EOF.

    Without a Content-Length (chunked uploads) reading to EOF is only safe when the server
    promises `wsgi.input_terminated`; otherwise the read could block, so the body is empty.
    """
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH", "")
    if length.isascii() and length.isdigit():
        return stream.read(int(length))
    return stream.read() if environ.get("wsgi.input_terminated") else b""


def _invoke(
    function: HttpFunction, request: func.HttpRequest, environ: WSGIEnvironment
) -> func.HttpResponse:
    """Call the function; any failure becomes a bare 500, as Azure answers.

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
        return _problem(environ, HTTPStatus.INTERNAL_SERVER_ERROR)
    return result


def _problem(
    environ: WSGIEnvironment, status: HTTPStatus, detail: str | None = None
) -> func.HttpResponse:
    """An RFC 9457 problem response made by the host itself, always with an X-Request-ID."""
    problem: dict[str, Any] = {"type": "about:blank", "title": status.phrase, "status": status}
    if detail is not None:
        problem["detail"] = detail
    return func.HttpResponse(
        json.dumps(problem, separators=(",", ":")),
        status_code=status,
        headers={"X-Request-ID": _request_id(environ)},
        mimetype=_PROBLEM_JSON,
    )


def _request_id(environ: WSGIEnvironment) -> str:
    """Echo a well-formed incoming X-Request-ID so logs correlate, else mint one."""
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    return incoming if _REQUEST_ID.fullmatch(incoming) else uuid.uuid4().hex


def _send(response: func.HttpResponse, start_response: StartResponse) -> list[bytes]:
    body = response.get_body() or b""
    # The host sets these itself: WSGI servers reject hop-by-hop headers from applications
    # (PEP 3333), and a Content-Length that disagrees with the body would break the connection.
    headers = [
        (name, value)
        for name, value in response.headers.items()
        if not is_hop_by_hop(name) and name.lower() != "content-length"
    ]
    if "content-type" not in response.headers:
        headers.append(("Content-Type", _content_type(response)))
    headers.append(("Content-Length", str(len(body))))
    start_response(_status_line(response.status_code), headers)
    return [body]


def _content_type(response: func.HttpResponse) -> str:
    """Content-Type from mimetype/charset, exactly as the worker's HTTP converter builds it."""
    if response.mimetype.startswith("text/"):
        return f"{response.mimetype}; charset={response.charset}"
    return response.mimetype


def _status_line(status_code: int) -> str:
    try:
        return f"{status_code} {HTTPStatus(status_code).phrase}"
    except ValueError:  # a code http.HTTPStatus does not know, e.g. 499
        return f"{status_code} Unknown"
