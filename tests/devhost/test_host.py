"""The WSGI host serves a FunctionApp the way the Functions host and Python worker do.

Uses its own small FunctionApp of echo functions, never the real function_app.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.functions.decorators.http import HttpTrigger

from devhost.cors import HostCors
from devhost.host import FunctionHost, create_app, query_params
from devhost.routing import RouteTemplateError

ORIGINS = HostCors(frozenset({"https://app.axly.pro", "http://localhost:19006"}))


def echo(req: func.HttpRequest, name: str) -> func.HttpResponse:
    """What the function saw, so tests can check the request conversion."""
    payload = {
        "function": name,
        "method": req.method,
        "url": req.url,
        "route": dict(req.route_params),
        "query": dict(req.params),
        "header": req.headers.get("x-echo"),
        "forwarded_for": req.headers.get("x-forwarded-for"),
        "body": req.get_body().decode("utf-8"),
    }
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


def register(
    app: func.FunctionApp,
    name: str,
    route: str | None,
    methods: list[str] | list[func.HttpMethod] | None = None,
    handler: Callable[[func.HttpRequest, str], Any] = echo,
) -> None:
    """Add an echo-style function; each call needs a fresh function object for the SDK."""

    def function(req: func.HttpRequest) -> Any:
        return handler(req, name)

    app.function_name(name)(app.route(route=route, methods=methods)(function))


def raw(req: func.HttpRequest, _: str) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), mimetype="application/octet-stream")


def created(_req: func.HttpRequest, _name: str) -> func.HttpResponse:
    response = func.HttpResponse(
        "a,b\n",
        status_code=201,
        headers={"X-Custom": "yes", "Location": "/api/things/1", "Content-Length": "999"},
        mimetype="text/csv",
        charset="latin-1",
    )
    response.headers.add("Set-Cookie", "a=1; Path=/")
    response.headers.add("Set-Cookie", "b=2; Path=/")
    response.headers["Connection"] = "close"  # hop-by-hop: WSGI servers refuse it
    return response


def typed(_req: func.HttpRequest, _name: str) -> func.HttpResponse:
    return func.HttpResponse(b"{}", headers={"Content-Type": "application/vnd.x+json"})


def fail(_req: func.HttpRequest, _name: str) -> func.HttpResponse:
    raise RuntimeError("secret connection string")


def wrong_return(_req: func.HttpRequest, _name: str) -> dict[str, str]:
    return {"not": "a response"}


async def async_echo(req: func.HttpRequest, name: str) -> func.HttpResponse:
    return echo(req, name)


def cors_aware(_req: func.HttpRequest, _name: str) -> func.HttpResponse:
    """A function that sets CORS headers of its own, as an app on another host might."""
    headers = {
        "Access-Control-Allow-Origin": "https://stale.example",
        "Access-Control-Expose-Headers": "X-Request-ID",
        "Vary": "Accept",
    }
    return func.HttpResponse("{}", headers=headers)


def teapot(_req: func.HttpRequest, _name: str) -> func.HttpResponse:
    return func.HttpResponse(status_code=499)


def build_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    register(app, "by_number", "Numbers/{n}", ["GET"])
    register(app, "greet", "greet/{name}", ["GET"])
    register(app, "a_new_item", "items/new", ["GET"])  # its name sorts first: it wins
    register(app, "item", "items/{id}", ["GET", "POST"])
    register(app, "echo", "echo", ["POST", "PUT"])
    register(app, "raw", "raw", [func.HttpMethod.POST], raw)
    register(app, "created", "created", None, created)
    register(app, "typed", "typed", None, typed)
    register(app, "boom", "boom", None, fail)
    register(app, "wrong_return", "wrong-return", None, wrong_return)
    register(app, "async_echo", "async", None, async_echo)
    register(app, "teapot", "teapot", None, teapot)
    register(app, "cors_aware", "cors-aware", ["GET"], cors_aware)
    register(app, "ping", None)  # no route: the function name is the route

    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
    def nightly(timer: func.TimerRequest) -> None:
        """Not HTTP-triggered: has no URL and must be ignored."""

    return app


@pytest.fixture(scope="module")
def host() -> FunctionHost:
    return create_app(build_app(), cors=ORIGINS)


@pytest.fixture
def client(host: FunctionHost) -> Iterator[httpx.Client]:
    transport = httpx.WSGITransport(app=host)
    with httpx.Client(transport=transport, base_url="http://testserver") as http_client:
        yield http_client


def call_wsgi(app: FunctionHost, **environ: Any) -> tuple[str, dict[str, str], bytes]:
    """Call the WSGI app directly, for what httpx's WSGITransport cannot express."""
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        **environ,
    }
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        seen.update(status=status, headers=dict(headers))
        return lambda _: None

    body = b"".join(app(environ, start_response))
    return seen["status"], seen["headers"], body


def assert_host_made(response: httpx.Response, status: int) -> None:
    """The host's own answers have no body, no Content-Type and no X-Request-ID."""
    assert response.status_code == status
    assert response.content == b""
    assert "content-type" not in response.headers
    assert "x-request-id" not in response.headers


# --- routing through HTTP -------------------------------------------------------------------


def test_literal_segments_match_ignoring_case(client: httpx.Client):
    response = client.get("/API/NUMBERS/42")
    assert response.status_code == 200
    assert response.json()["route"] == {"n": "42"}


def test_route_values_are_url_decoded_text(client: httpx.Client):
    response = client.get("/api/greet/J%C3%BCrgen%20M")
    assert response.json()["route"] == {"name": "Jürgen M"}


def test_overlapping_routes_go_to_the_function_whose_name_sorts_first(client: httpx.Client):
    assert client.get("/api/items/new").json()["function"] == "a_new_item"
    assert client.get("/api/items/42").json()["function"] == "item"
    seen = client.post("/api/items/new").json()  # a_new_item takes no POST: item's turn
    assert (seen["function"], seen["route"]) == ("item", {"id": "new"})


def test_trailing_slash_is_tolerated(client: httpx.Client):
    assert client.get("/api/ping/").json()["function"] == "ping"


def test_function_without_route_is_served_under_its_name(client: httpx.Client):
    response = client.get("/api/ping")
    assert response.status_code == 200
    assert response.json()["function"] == "ping"


@pytest.mark.parametrize(("method", "path"), [("DELETE", "/api/items/new"), ("GET", "/api/echo")])
def test_known_route_with_a_method_it_does_not_declare_is_an_empty_404(
    client: httpx.Client, method: str, path: str
):
    assert_host_made(client.request(method, path), 404)


def test_head_is_not_special(client: httpx.Client):
    assert_host_made(client.head("/api/greet/x"), 404)
    assert client.head("/api/ping").status_code == 200


@pytest.mark.parametrize("path", ["/api/nothing-here", "/ping", "/apix/ping", "/", "/api"])
def test_unknown_path_and_paths_outside_the_prefix_are_an_empty_404(
    client: httpx.Client, path: str
):
    assert_host_made(client.get(path, headers={"X-Request-ID": "abc"}), 404)


# --- CORS, answered by the host ------------------------------------------------------------


def preflight(client: httpx.Client, path: str, origin: str, **headers: str) -> httpx.Response:
    return client.options(
        path, headers={"Origin": origin, "Access-Control-Request-Method": "POST", **headers}
    )


@pytest.mark.parametrize("path", ["/api/echo", "/api/nothing-here", "/api/ping"])
def test_preflight_from_an_allowed_origin_is_answered_by_the_host_for_any_path(
    client: httpx.Client, path: str
):
    response = preflight(
        client,
        path,
        "https://app.axly.pro",
        **{"Access-Control-Request-Headers": "authorization, content-type"},
    )
    assert response.status_code == 204
    assert response.content == b""
    assert response.headers["access-control-allow-origin"] == "https://app.axly.pro"
    assert response.headers["access-control-allow-methods"] == "POST"
    assert response.headers["access-control-allow-headers"] == "authorization,content-type"
    assert response.headers["vary"] == "Origin"  # more than one origin is allowed
    assert "access-control-max-age" not in response.headers


def test_preflight_from_another_origin_is_a_204_without_cors_headers(client: httpx.Client):
    response = preflight(client, "/api/echo", "https://evil.example")
    assert response.status_code == 204
    assert not [name for name in response.headers if name.startswith("access-control")]


def test_options_without_preflight_headers_is_routed_like_any_method(client: httpx.Client):
    assert_host_made(client.options("/api/echo", headers={"Origin": "https://app.axly.pro"}), 404)
    assert client.options("/api/ping").json()["method"] == "OPTIONS"


def test_allowed_origin_gets_exactly_one_allow_origin_header(client: httpx.Client):
    """The host sets the header itself, replacing one the function may have sent."""
    response = client.get("/api/cors-aware", headers={"Origin": "http://localhost:19006"})
    assert response.headers.get_list("access-control-allow-origin") == ["http://localhost:19006"]
    assert response.headers["access-control-expose-headers"] == "X-Request-ID"
    assert response.headers.get_list("vary") == ["Accept", "Origin"]


def test_other_origins_and_requests_without_origin_get_no_allow_origin(client: httpx.Client):
    for headers in ({"Origin": "https://evil.example"}, {}):
        response = client.get("/api/ping", headers=headers)
        assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(("path", "status"), [("/api/nothing", 404), ("/api/boom", 500)])
def test_host_made_answers_carry_cors_headers_too(client: httpx.Client, path: str, status: int):
    response = client.get(path, headers={"Origin": "https://app.axly.pro"})
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == "https://app.axly.pro"


def test_a_single_allowed_origin_adds_no_vary():
    host = create_app(build_app(), cors=HostCors(frozenset({"https://app.axly.pro"})))
    _, headers, _ = call_wsgi(host, PATH_INFO="/api/ping", HTTP_ORIGIN="https://app.axly.pro")
    assert headers["Access-Control-Allow-Origin"] == "https://app.axly.pro"
    assert "Vary" not in headers


def test_without_allowed_origins_preflights_are_still_answered_by_the_host(
    monkeypatch: pytest.MonkeyPatch,
):
    """Azure's host runs its CORS layer even with an empty list: no app sees a preflight."""
    monkeypatch.delenv("CORS_ALLOWED_ORIGINS", raising=False)
    host = create_app(build_app())
    status, headers, _ = call_wsgi(
        host,
        REQUEST_METHOD="OPTIONS",
        PATH_INFO="/api/ping",
        HTTP_ORIGIN="https://app.axly.pro",
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )
    assert status == "204 No Content"
    assert "Access-Control-Allow-Origin" not in headers


def test_create_app_reads_the_platform_written_origins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CORS_ALLOWED_ORIGINS", '["https://app.axly.pro"]')
    host = create_app(build_app())
    _, headers, _ = call_wsgi(host, PATH_INFO="/api/ping", HTTP_ORIGIN="https://app.axly.pro")
    assert headers["Access-Control-Allow-Origin"] == "https://app.axly.pro"


# --- request conversion ---------------------------------------------------------------------


def test_headers_query_and_body_reach_the_function(client: httpx.Client):
    body = json.dumps({"name": "Zoë 🚗"}, ensure_ascii=False).encode("utf-8")
    response = client.post(
        "/api/echo?q=1&name=J%C3%BCrgen&plus=a+b",
        headers={"X-Echo": "hello", "Content-Type": "application/json"},
        content=body,
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["url"] == "http://testserver/api/echo?q=1&name=J%C3%BCrgen&plus=a+b"
    assert seen["query"] == {"q": "1", "name": "Jürgen", "plus": "a b"}
    assert seen["header"] == "hello"
    assert seen["body"] == '{"name": "Zoë 🚗"}'


@pytest.mark.parametrize(
    ("sent", "environ", "forwarded_for"),
    [
        ({}, {"REMOTE_ADDR": "198.51.100.7", "REMOTE_PORT": "50123"}, "198.51.100.7:50123"),
        (
            {"HTTP_X_FORWARDED_FOR": "203.0.113.9"},
            {"REMOTE_ADDR": "198.51.100.7", "REMOTE_PORT": "50123"},
            "203.0.113.9, 198.51.100.7:50123",
        ),
        ({}, {"REMOTE_ADDR": "2001:db8::7", "REMOTE_PORT": "443"}, "[2001:db8::7]:443"),
    ],
)
def test_the_connections_address_is_appended_to_x_forwarded_for_as_azures_front_end_does(
    host: FunctionHost, sent: dict[str, str], environ: dict[str, str], forwarded_for: str
):
    _, _, body = call_wsgi(host, REQUEST_METHOD="PUT", PATH_INFO="/api/echo", **sent, **environ)
    assert json.loads(body)["forwarded_for"] == forwarded_for


def test_repeated_query_parameters_arrive_joined_with_commas(client: httpx.Client):
    seen = client.put("/api/echo?limit=5&limit=10&empty=&blank=&blank=x").json()
    assert seen["query"] == {"limit": "5,10", "blank": "x"}
    assert seen["url"].endswith("?limit=5&limit=10&empty=&blank=&blank=x")  # the raw query


@pytest.mark.parametrize(
    ("query", "params"),
    [
        ("a=1&a=2&a=3", {"a": "1,2,3"}),
        ("a=&a=1&a=", {"a": "1"}),  # blank values are skipped when joining
        ("a=&b", {}),  # a parameter left blank is not passed at all
        ("Limit=5&limit=10", {"Limit": "5,10"}),  # names ignore case, the first spelling stays
        ("a=x%2Cy&a=z", {"a": "x,y,z"}),
        ("", {}),
    ],
)
def test_query_params_follow_the_host(query: str, params: dict[str, str]):
    assert query_params(query) == params


def test_url_has_no_question_mark_without_query(client: httpx.Client):
    assert client.put("/api/echo").json()["url"] == "http://testserver/api/echo"


def test_binary_body_round_trips(client: httpx.Client):
    body = bytes(range(256)) * 4
    response = client.post("/api/raw", content=body)
    assert response.content == body
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(body))


@pytest.mark.parametrize("content_length", [None, "14"])
def test_a_chunked_body_reaches_the_function_empty(host: FunctionHost, content_length: str | None):
    """The host reads only a declared Content-Length; waitress would invent one (see
    devhost.server), so Transfer-Encoding decides."""
    environ = {"CONTENT_LENGTH": content_length} if content_length is not None else {}
    _, _, body = call_wsgi(
        host,
        REQUEST_METHOD="POST",
        PATH_INFO="/api/raw",
        HTTP_TRANSFER_ENCODING="chunked",
        **environ,
        **{"wsgi.input": io.BytesIO(b"chunked upload")},
    )
    assert body == b""


def test_a_streamed_upload_without_length_reaches_the_function_empty(client: httpx.Client):
    response = client.post("/api/raw", content=iter([b"part1,", b"part2"]))
    assert (response.status_code, response.content) == (200, b"")


@pytest.mark.parametrize("content_length", [None, "", "nonsense", "0"])
def test_body_without_usable_length_is_empty(host: FunctionHost, content_length: str | None):
    environ = {"CONTENT_LENGTH": content_length} if content_length is not None else {}
    _, _, body = call_wsgi(
        host,
        REQUEST_METHOD="POST",
        PATH_INFO="/api/raw",
        **environ,
        **{"wsgi.input": io.BytesIO(b"would block on a real socket")},
    )
    assert body == b""


def test_body_is_read_up_to_content_length(host: FunctionHost):
    _, _, body = call_wsgi(
        host,
        REQUEST_METHOD="POST",
        PATH_INFO="/api/raw",
        CONTENT_LENGTH="5",
        **{"wsgi.input": io.BytesIO(b"12345 and the next request")},
    )
    assert body == b"12345"


def test_pep3333_latin1_paths_and_queries_are_decoded_as_utf8(host: FunctionHost):
    """Real servers (waitress) pass URL bytes as latin-1 text; httpx passes text directly."""
    _, _, body = call_wsgi(
        host,
        PATH_INFO="/api/greet/Jürgen".encode().decode("latin-1"),
        QUERY_STRING="city=Köln".encode().decode("latin-1"),
        HTTP_HOST="localhost:7071",
    )
    seen = json.loads(body)
    assert seen["route"] == {"name": "Jürgen"}
    assert seen["query"] == {"city": "Köln"}
    assert seen["url"] == "http://localhost:7071/api/greet/J%C3%BCrgen?city=Köln"


# --- response conversion --------------------------------------------------------------------


def test_status_headers_and_mimetype_come_through(client: httpx.Client):
    response = client.get("/api/created")
    assert response.status_code == 201
    assert response.headers["x-custom"] == "yes"
    assert response.headers["location"] == "/api/things/1"
    assert response.headers["content-type"] == "text/csv; charset=latin-1"
    assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert response.headers["content-length"] == "4"  # the real length, not the declared one
    assert "connection" not in response.headers
    assert response.text == "a,b\n"


def test_explicit_content_type_header_wins_over_mimetype(client: httpx.Client):
    assert client.get("/api/typed").headers["content-type"] == "application/vnd.x+json"


def test_status_line_has_the_reason_phrase(host: FunctionHost):
    assert call_wsgi(host, PATH_INFO="/api/created")[0] == "201 Created"
    assert call_wsgi(host, PATH_INFO="/api/nope")[0] == "404 Not Found"
    assert call_wsgi(host, PATH_INFO="/api/teapot")[0] == "499 Unknown"


def test_async_functions_are_awaited(client: httpx.Client):
    assert client.get("/api/async").json()["function"] == "async_echo"


@pytest.mark.parametrize("path", ["/api/boom", "/api/wrong-return"])
def test_failing_function_is_an_empty_500_and_the_traceback_is_logged(
    client: httpx.Client, caplog: pytest.LogCaptureFixture, path: str
):
    with caplog.at_level(logging.ERROR, logger="devhost.host"):
        response = client.get(path, headers={"X-Request-ID": "req-1"})
    assert_host_made(response, 500)
    assert caplog.records[-1].exc_info is not None


# --- construction ---------------------------------------------------------------------------


def test_functions_lists_http_functions_with_prefixed_routes(host: FunctionHost):
    by_name = {function.name: function for function in host.functions}
    assert "nightly" not in by_name
    assert by_name["by_number"].route == "api/Numbers/{n}"
    assert by_name["by_number"].methods == ("GET",)
    assert by_name["raw"].methods == ("POST",)
    assert by_name["created"].methods is None
    assert by_name["ping"].route == "api/ping"
    assert by_name["ping"].binding_name == "req"


def test_empty_route_prefix_serves_from_the_root():
    with httpx.Client(
        transport=httpx.WSGITransport(app=create_app(build_app(), route_prefix="")),
        base_url="http://testserver",
    ) as client:
        assert client.get("/ping").json()["function"] == "ping"
        assert client.get("/api/ping").status_code == 404


def test_route_prefix_may_have_slashes():
    host = create_app(build_app(), route_prefix="/v1/beta/")
    assert call_wsgi(host, PATH_INFO="/v1/beta/ping")[0] == "200 OK"


class CountingApp(func.FunctionApp):
    """Counts indexing; also drops the SDK-filled routes to exercise the host's own rule."""

    calls = 0

    def get_functions(self) -> list[func.decorators.function_app.Function]:
        type(self).calls += 1
        functions = super().get_functions()
        for function in functions:
            for binding in function.get_bindings():
                if isinstance(binding, HttpTrigger):
                    binding.route = None
        return functions


def test_functions_are_indexed_once_and_a_missing_route_means_the_function_name():
    app = CountingApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    register(app, "Legacy", "ignored")
    host = create_app(app)
    assert call_wsgi(host, PATH_INFO="/api/legacy")[0] == "200 OK"
    assert call_wsgi(host, PATH_INFO="/api/ignored")[0] == "404 Not Found"
    assert CountingApp.calls == 1


@pytest.mark.parametrize(
    ("route", "message"),
    [
        ("things/{id:guid}", "not a literal or a plain"),
        ("files/{*rest}", "not a literal or a plain"),
        ("admin/things", "built-in"),
    ],
)
def test_routes_the_app_never_registers_or_the_host_refuses_fail_at_start_up(
    route: str, message: str
):
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    register(app, "bad", route)
    with pytest.raises(RouteTemplateError, match=message):
        create_app(app, cors=ORIGINS)


def test_conflicting_routes_fail_at_start_up():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    register(app, "one", "things", ["GET"])
    register(app, "two", "Things", ["GET", "POST"])
    with pytest.raises(RouteTemplateError, match="conflicts"):
        create_app(app, cors=ORIGINS)


def test_generic_http_triggers_and_lower_case_methods_are_served():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.generic_trigger(arg_name="request", type="httpTrigger", route="g/{x}", methods=["get"])
    @app.generic_output_binding(arg_name="$return", type="http")
    def generic(request: func.HttpRequest) -> func.HttpResponse:
        return echo(request, "generic")

    host = create_app(app)
    assert host.functions[0].methods == ("GET",)
    _, _, body = call_wsgi(host, PATH_INFO="/api/g/1")
    assert json.loads(body)["route"] == {"x": "1"}
