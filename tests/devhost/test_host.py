"""The WSGI host serves a FunctionApp the way the Functions host and Python worker do.

Uses its own small FunctionApp of echo functions, never the real function_app.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import azure.functions as func
import httpx
import pytest

from devhost.host import FunctionHost, create_app
from devhost.routing import RouteTemplateError

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
PROBLEM_500 = {"type": "about:blank", "title": "Internal Server Error", "status": 500}


def echo(req: func.HttpRequest, name: str) -> func.HttpResponse:
    """What the function saw, so tests can check the request conversion."""
    payload = {
        "function": name,
        "method": req.method,
        "url": req.url,
        "route": dict(req.route_params),
        "query": dict(req.params),
        "header": req.headers.get("x-echo"),
        "body": req.get_body().decode("utf-8"),
    }
    return func.HttpResponse(json.dumps(payload), mimetype="application/json")


def register(
    app: func.FunctionApp,
    name: str,
    route: str | None,
    methods: list[str] | None = None,
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


def teapot(_req: func.HttpRequest, _name: str) -> func.HttpResponse:
    return func.HttpResponse(status_code=499)


def build_app() -> func.FunctionApp:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    register(app, "by_guid", "things/{id:guid}", ["GET"])
    register(app, "by_int", "Numbers/{n:int}", ["GET"])
    register(app, "greet", "greet/{name?}", ["GET"])
    register(app, "files", "files/{*rest}", ["GET"])
    register(app, "item", "items/{id}", ["GET", "POST"])  # declared first, still loses to new
    register(app, "new_item", "items/new", ["GET"])
    register(app, "echo", "echo", ["POST", "PUT"])
    register(app, "raw", "raw", [func.HttpMethod.POST], raw)
    register(app, "created", "created", None, created)
    register(app, "typed", "typed", None, typed)
    register(app, "boom", "boom", None, fail)
    register(app, "wrong_return", "wrong-return", None, wrong_return)
    register(app, "async_echo", "async", None, async_echo)
    register(app, "teapot", "teapot", None, teapot)
    register(app, "ping", None)  # no route: the function name is the route

    @app.timer_trigger(schedule="0 0 * * * *", arg_name="timer")
    def nightly(timer: func.TimerRequest) -> None:
        """Not HTTP-triggered: has no URL and must be ignored."""

    return app


@pytest.fixture(scope="module")
def host() -> FunctionHost:
    return create_app(build_app())


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


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "about:blank"
    assert problem["status"] == status
    return problem


# --- routing through HTTP -------------------------------------------------------------------


def test_literal_segments_match_ignoring_case(client: httpx.Client):
    response = client.get("/API/NUMBERS/42")
    assert response.status_code == 200
    assert response.json()["route"] == {"n": "42"}


def test_guid_constraint(client: httpx.Client):
    assert client.get(f"/api/things/{GUID}").json()["route"] == {"id": GUID}
    problem = assert_problem(client.get("/api/things/not-a-guid"), 404)
    assert problem["detail"] == "No route matches /api/things/not-a-guid"


def test_int_constraint(client: httpx.Client):
    assert client.get("/api/numbers/-7").json()["route"] == {"n": "-7"}
    assert client.get("/api/numbers/seven").status_code == 404


def test_optional_parameter_present_and_absent(client: httpx.Client):
    assert client.get("/api/greet/ana").json()["route"] == {"name": "ana"}
    assert client.get("/api/greet").json()["route"] == {}


def test_catch_all_takes_slashes(client: httpx.Client):
    assert client.get("/api/files/a/b/c.txt").json()["route"] == {"rest": "a/b/c.txt"}
    assert client.get("/api/files").json()["route"] == {}


def test_route_values_are_url_decoded_text(client: httpx.Client):
    response = client.get("/api/greet/J%C3%BCrgen%20M")
    assert response.json()["route"] == {"name": "Jürgen M"}


def test_literal_beats_parameter_and_methods_filter_first(client: httpx.Client):
    assert client.get("/api/items/new").json()["function"] == "new_item"
    assert client.get("/api/items/42").json()["function"] == "item"
    seen = client.post("/api/items/new").json()
    assert (seen["function"], seen["route"]) == ("item", {"id": "new"})


def test_trailing_slash_is_tolerated(client: httpx.Client):
    assert client.get("/api/ping/").json()["function"] == "ping"


def test_function_without_route_is_served_under_its_name(client: httpx.Client):
    response = client.get("/api/ping")
    assert response.status_code == 200
    assert response.json()["function"] == "ping"


def test_wrong_method_on_known_path_is_405_with_allow(client: httpx.Client):
    response = client.delete("/api/items/new")
    problem = assert_problem(response, 405)
    assert problem["title"] == "Method Not Allowed"
    assert problem["detail"] == "DELETE is not allowed on /api/items/new"
    assert response.headers["allow"] == "GET, POST"
    assert response.headers["x-request-id"]


def test_head_is_not_special(client: httpx.Client):
    assert client.head("/api/items/new").status_code == 405
    assert client.head("/api/ping").status_code == 200


@pytest.mark.parametrize("path", ["/api/nothing-here", "/ping", "/apix/ping", "/", "/api"])
def test_unknown_path_and_paths_outside_the_prefix_are_404(client: httpx.Client, path: str):
    problem = assert_problem(client.get(path), 404)
    assert problem == {
        "type": "about:blank",
        "title": "Not Found",
        "status": 404,
        "detail": f"No route matches {path}",
    }


def test_404_echoes_a_well_formed_request_id(client: httpx.Client):
    response = client.get("/api/nothing", headers={"X-Request-ID": "abc.DEF_1-2"})
    assert response.headers["x-request-id"] == "abc.DEF_1-2"


@pytest.mark.parametrize("incoming", [None, "", "has space", "x" * 129, "semi;colon"])
def test_404_mints_a_request_id_when_missing_or_malformed(
    client: httpx.Client, incoming: str | None
):
    headers = {} if incoming is None else {"X-Request-ID": incoming}
    request_id = client.get("/api/nothing", headers=headers).headers["x-request-id"]
    assert request_id != incoming
    assert uuid.UUID(hex=request_id).version == 4


# --- request conversion ---------------------------------------------------------------------


def test_headers_query_and_body_reach_the_function(client: httpx.Client):
    body = json.dumps({"name": "Zoë 🚗"}, ensure_ascii=False).encode("utf-8")
    response = client.post(
        "/api/echo?q=1&q=2&name=J%C3%BCrgen&empty=&plus=a+b",
        headers={"X-Echo": "hello", "Content-Type": "application/json"},
        content=body,
    )
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["url"] == "http://testserver/api/echo?q=1&q=2&name=J%C3%BCrgen&empty=&plus=a+b"
    assert seen["query"] == {"q": "2", "name": "Jürgen", "empty": "", "plus": "a b"}
    assert seen["header"] == "hello"
    assert seen["body"] == '{"name": "Zoë 🚗"}'


def test_url_has_no_question_mark_without_query(client: httpx.Client):
    assert client.put("/api/echo").json()["url"] == "http://testserver/api/echo"


def test_binary_body_round_trips(client: httpx.Client):
    body = bytes(range(256)) * 4
    response = client.post("/api/raw", content=body)
    assert response.content == body
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-length"] == str(len(body))


def test_body_without_content_length_is_read_when_input_is_terminated(host: FunctionHost):
    _, _, body = call_wsgi(
        host,
        REQUEST_METHOD="POST",
        PATH_INFO="/api/raw",
        **{"wsgi.input": io.BytesIO(b"chunked upload"), "wsgi.input_terminated": True},
    )
    assert body == b"chunked upload"


@pytest.mark.parametrize("content_length", [None, "", "nonsense"])
def test_body_without_usable_length_or_eof_marker_is_empty(
    host: FunctionHost, content_length: str | None
):
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
def test_failing_function_is_a_bare_500_and_the_traceback_is_logged(
    client: httpx.Client, caplog: pytest.LogCaptureFixture, path: str
):
    with caplog.at_level(logging.ERROR, logger="devhost.host"):
        response = client.get(path, headers={"X-Request-ID": "req-1"})
    assert_problem(response, 500)
    assert response.json() == PROBLEM_500
    assert "secret" not in response.text
    assert response.headers["x-request-id"] == "req-1"
    assert caplog.records[-1].exc_info is not None


# --- construction ---------------------------------------------------------------------------


def test_functions_lists_http_functions_with_prefixed_routes(host: FunctionHost):
    by_name = {function.name: function for function in host.functions}
    assert "nightly" not in by_name
    assert by_name["by_guid"].route == "api/things/{id:guid}"
    assert by_name["by_guid"].methods == ("GET",)
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
                if binding.type == "httpTrigger":
                    binding.route = None  # type: ignore[attr-defined]
        return functions


def test_functions_are_indexed_once_and_a_missing_route_means_the_function_name():
    app = CountingApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    register(app, "Legacy", "ignored")
    host = create_app(app)
    assert call_wsgi(host, PATH_INFO="/api/legacy")[0] == "200 OK"
    assert call_wsgi(host, PATH_INFO="/api/ignored")[0] == "404 Not Found"
    assert CountingApp.calls == 1


def test_invalid_routes_fail_at_start_up():
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    register(app, "bad", "things/{id:unknown}")
    with pytest.raises(RouteTemplateError, match="unknown"):
        create_app(app)


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
