"""The HTTP conventions every route inherits, shown on a small router of their own
(served by the local host like the real app): errors, body rules, CORS, request ids."""

from __future__ import annotations

import re
import uuid
from typing import Any

import azure.functions as func
import httpx
import pytest
from pydantic import Field
from sqlalchemy import select, text

from api.endpoints import (
    DbRequest,
    Form,
    ReadRequest,
    Reply,
    Request,
    RouteError,
    Router,
    SlowUserRequest,
    UserRequest,
)
from api.errors import ConflictError
from api.models import Vehicle
from api.openapi import build_openapi
from api.schemas.common import InputModel, OutputModel, Pagination
from devhost.host import create_app

router = Router("test")


class Widget(InputModel):
    name: str = Field(min_length=1, max_length=10)
    size: int = Field(ge=1)


class WidgetOut(OutputModel):
    name: str
    size: int


@router.operation(
    "POST", "widgets", summary="Create", response=WidgetOut, status=201, max_body_bytes=2048
)
def create_widget(request: Request[Widget]) -> Reply:
    if request.body.name == "taken":
        raise ConflictError("That name is taken")
    return Reply(request.body, headers={"Location": "/api/widgets/1"})


@router.operation("PUT", "widgets/{widget_id}", summary="Replace")
def replace_widget(request: Request[Widget], widget_id: uuid.UUID) -> dict[str, object]:
    return request.body.model_dump()


@router.operation("GET", "widgets", summary="List")
def list_widgets(request: Request[None, Pagination]) -> dict[str, int]:
    return {"limit": request.query.limit, "offset": request.query.offset}


@router.operation("GET", "widgets/{widget_id}", summary="Get")
def get_widget(request: Request, widget_id: uuid.UUID) -> dict[str, str]:
    return {"id": str(widget_id)}


@router.operation("DELETE", "widgets/{widget_id}", summary="Delete")
def delete_widget(request: Request, widget_id: uuid.UUID) -> None:
    return None


@router.operation("GET", "boom", summary="Fails")
def boom(request: Request) -> dict[str, str]:
    raise RuntimeError("secret internals: password=hunter2")


@router.operation("GET", "private", summary="Needs a token")
def private(request: UserRequest) -> dict[str, str]:
    return {}  # pragma: no cover - never reached without a token


@router.operation("GET", "counted", summary="Uses the database")
def counted(request: DbRequest) -> dict[str, int]:
    return {"one": request.session.scalar(text("SELECT 1")) or 0}


@router.operation("POST", "steps", summary="Two short units of work, no session between")
def two_steps(request: SlowUserRequest[Widget]) -> None:
    with request.unit_of_work() as session:
        session.add(
            Vehicle(user_id=request.user.id, make=request.body.name, model="M", year="2020")
        )
    with request.unit_of_work() as session:
        session.add(Vehicle(user_id=request.user.id, make="second", model="M", year="2020"))
        if request.body.size > 1:
            raise ConflictError("The second step failed")


@router.operation("POST", "keyed", summary="Idempotent, failing as asked", idempotent=True)
def keyed(request: UserRequest[Widget]) -> Reply:
    """Writes a vehicle, then answers as its body's name says: a failure whose writes are
    kept, a failure answered without raising, or a success."""
    request.session.add(
        Vehicle(user_id=request.user.id, make=request.body.name, model="M", year="2020")
    )
    request.session.flush()
    if request.body.name == "kept":
        raise ConflictError("Failed, but what it wrote counts", keep_changes=True)
    if request.body.name == "declined":
        return Reply({"declined": True}, status=409)
    return Reply({"made": request.body.name})


@router.operation("GET", "labels/{name}/{token}", summary="Typed by declaration, not by name")
def label(request: Request, name: str, token: uuid.UUID) -> dict[str, str]:
    return {"name": name, "token": str(token)}


@pytest.fixture(scope="module")
def api() -> httpx.Client:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(router.blueprint())
    transport = httpx.WSGITransport(app=create_app(app))
    return httpx.Client(transport=transport, base_url="http://testserver/api")


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert {"type", "title", "detail"} <= body.keys()
    return body


def test_valid_body_is_parsed_and_serialised(api: httpx.Client) -> None:
    response = api.post("/widgets", json={"name": "bolt", "size": 3})
    assert response.status_code == 201
    assert response.json() == {"name": "bolt", "size": 3}
    assert response.headers["Location"] == "/api/widgets/1"
    assert response.headers["Cache-Control"] == "no-store"


def test_malformed_json_is_400(api: httpx.Client) -> None:
    response = api.post(
        "/widgets", content=b'{"name": "bolt",', headers={"Content-Type": "application/json"}
    )
    body = assert_problem(response, 400, "malformed_json")
    assert "not valid JSON" in body["detail"]


@pytest.mark.parametrize(
    ("body", "status", "read"),
    [
        # What the fast parser (pydantic-core's) refuses goes to json.loads, which decides.
        (b'\xef\xbb\xbf{"name": "bolt", "size": 2}', 200, {"name": "bolt", "size": 2}),
        (b'{"name": "\\ud83d\\ude00", "size": 2}', 200, {"name": "\U0001f600", "size": 2}),
        (b'{"name": "bolt", "size": 2, "deep": ' + b"[" * 300 + b"]" * 300 + b"}", 422, None),
        (b'{"name": "bolt", "size": 2} x', 400, None),
        (b'{"name": "bolt", "size": NaN}', 422, None),
        (b'{"name": "b", "name": "bolt", "size": 2}', 200, {"name": "bolt", "size": 2}),
    ],
)
def test_json_bodies_are_read_as_json_loads_reads_them(
    api: httpx.Client, body: bytes, status: int, read: dict[str, Any] | None
) -> None:
    response = api.put(
        "/widgets/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == status, response.text
    if read is not None:
        assert response.json() == read
    if status == 422:
        assert {e["field"] for e in response.json()["errors"]} <= {"body.deep", "body.size"}


def test_wrong_content_type_is_415(api: httpx.Client) -> None:
    response = api.post(
        "/widgets",
        content=b"name=bolt",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    body = assert_problem(response, 415, "unsupported_media_type")
    assert "application/json" in body["detail"]


def test_oversize_body_is_413(api: httpx.Client) -> None:
    response = api.post("/widgets", json={"name": "x" * 5000, "size": 1})
    body = assert_problem(response, 413, "payload_too_large")
    assert "2048" in body["detail"]


def test_global_body_cap_applies_to_every_route(api: httpx.Client, override_settings) -> None:
    url = "/widgets/3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    padded = {"name": "bolt", "size": 1, "pad": " " * 1500}
    assert api.put(url, json=padded).status_code == 422  # under the default 1 MB cap
    override_settings(MAX_BODY_BYTES="1024")
    assert_problem(api.put(url, json=padded), 413, "payload_too_large")


def test_validation_errors_name_each_field(api: httpx.Client) -> None:
    response = api.post("/widgets", json={"name": "", "size": 0, "owner": "someone-else"})
    body = assert_problem(response, 422, "validation_failed")
    fields = {error["field"] for error in body["errors"]}
    assert fields == {"body.name", "body.size", "body.owner"}
    assert "body.owner" in body["detail"]


def test_validation_errors_are_capped_and_the_rest_counted(api: httpx.Client) -> None:
    unknown = {f"extra{n}": n for n in range(500)}
    response = api.put(
        "/widgets/3f2504e0-4f89-11d3-9a0c-0305e82c3301", json={"name": "", **unknown}
    )
    body = assert_problem(response, 422, "validation_failed")
    # 502 problems: the empty name, the missing size and 500 unknown keys.
    assert len(body["errors"]) == 20
    assert body["errors_omitted"] == 482
    assert body["detail"].endswith("and 482 more")


def test_a_huge_unknown_key_is_clipped_in_the_error(api: httpx.Client) -> None:
    key = "k" * 800_000
    response = api.put("/widgets/3f2504e0-4f89-11d3-9a0c-0305e82c3301", json={key: 1})
    body = assert_problem(response, 422, "validation_failed")
    assert len(response.content) < 16_384
    clipped = next(e for e in body["errors"] if e["type"] == "extra_forbidden")
    assert clipped["loc"] == ["body", "k" * 63 + "…"]
    assert "errors_omitted" not in body


def test_a_body_of_too_many_json_items_is_refused_unparsed(api: httpx.Client) -> None:
    def put(body: str) -> httpx.Response:
        return api.put(
            "/widgets/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
            content=body.encode(),
            headers={"Content-Type": "application/json"},
        )

    def ones(n: int) -> str:  # `{`, `:`, `[` and n - 1 commas: n + 2 items
        return '{"x":[' + ",".join(["1"] * n) + "]}"

    assert put(ones(9_998)).status_code == 422  # 10,000 items: parsed and validated
    body = assert_problem(put(ones(9_999)), 413, "too_many_json_items")
    assert "10000" in body["detail"]
    # Separators inside strings are text, not items.
    assert put('{"x":"' + "[,:{" * 5_000 + '"}').status_code == 422


def test_query_is_validated(api: httpx.Client) -> None:
    assert api.get("/widgets", params={"limit": "7"}).json() == {"limit": 7, "offset": 0}
    body = assert_problem(api.get("/widgets", params={"limit": "1000"}), 422, "validation_failed")
    assert body["errors"][0]["loc"] == ["query", "limit"]


def test_domain_error_becomes_its_status(api: httpx.Client) -> None:
    body = assert_problem(api.post("/widgets", json={"name": "taken", "size": 1}), 409, "conflict")
    assert body["detail"] == "That name is taken"


def test_unhandled_exception_is_a_generic_500(api: httpx.Client) -> None:
    response = api.get("/boom")
    body = assert_problem(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
    assert response.headers["X-Request-ID"]
    assert "X-Request-ID" in body["detail"]


def test_non_uuid_id_is_404(api: httpx.Client) -> None:
    assert_problem(api.get("/widgets/not-a-uuid"), 404, "not_found")
    ok = api.get("/widgets/3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    assert ok.json() == {"id": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"}


def test_route_parameters_are_typed_by_their_declaration(api: httpx.Client) -> None:
    token = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
    assert api.get(f"/labels/not-a-uuid/{token}").json() == {"name": "not-a-uuid", "token": token}
    body = assert_problem(api.get("/labels/x/not-a-uuid"), 404, "not_found")
    assert body["detail"] == "No such token"
    document = build_openapi([router], version="test")
    parameters = document["paths"]["/api/labels/{name}/{token}"]["get"]["parameters"]
    assert [(p["name"], p["schema"]) for p in parameters if p.get("in") == "path"] == [
        ("name", {"type": "string"}),
        ("token", {"type": "string", "format": "uuid"}),
    ]


def test_no_content_reply(api: httpx.Client) -> None:
    response = api.delete("/widgets/3f2504e0-4f89-11d3-9a0c-0305e82c3301")
    assert response.status_code == 204
    assert response.content == b""


def test_missing_bearer_token_is_401_with_challenge(api: httpx.Client) -> None:
    response = api.get("/private")
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_request_id_is_echoed_when_sane_and_minted_otherwise(api: httpx.Client) -> None:
    echoed = api.get("/widgets", headers={"X-Request-ID": "abc-123.def_4"})
    assert echoed.headers["X-Request-ID"] == "abc-123.def_4"
    minted = api.get("/widgets", headers={"X-Request-ID": "bad id\twith spaces"})
    assert minted.headers["X-Request-ID"] not in ("", "bad id\twith spaces")
    assert len(api.get("/widgets").headers["X-Request-ID"]) == 32


def test_preflights_are_the_hosts_and_no_function_declares_options(api: httpx.Client) -> None:
    """On Azure the platform's CORS answers every preflight before any function runs."""
    response = api.options(
        "/widgets",
        headers={"Origin": "https://app.axly.pro", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.axly.pro"
    assert "X-Request-ID" not in response.headers  # no function ran
    assert api.options("/widgets").status_code == 404


def test_exactly_one_allow_origin_and_the_apps_exposed_headers(api: httpx.Client) -> None:
    allowed = api.get("/widgets", headers={"Origin": "http://localhost:19006"})
    assert allowed.headers.get_list("Access-Control-Allow-Origin") == ["http://localhost:19006"]
    assert allowed.headers["Access-Control-Expose-Headers"] == (
        "Location, Retry-After, WWW-Authenticate, X-Request-ID, RateLimit, RateLimit-Policy, "
        "Idempotent-Replayed, Content-Disposition"
    )
    denied = api.get("/widgets", headers={"Origin": "http://localhost:1"})
    assert "Access-Control-Allow-Origin" not in denied.headers


def test_wrong_method_on_known_path_is_the_hosts_empty_404(api: httpx.Client) -> None:
    response = api.patch("/widgets", json={})
    assert (response.status_code, response.content) == (404, b"")


def test_repeated_query_parameter_is_422_naming_it(api: httpx.Client) -> None:
    """The host joins repeated values with commas: `limit=5&limit=10` arrives as "5,10"."""
    response = api.get("/widgets?limit=5&limit=10")
    body = assert_problem(response, 422, "validation_failed")
    assert [error["field"] for error in body["errors"]] == ["query.limit"]


def test_blank_query_parameter_is_left_out_so_its_default_applies(api: httpx.Client) -> None:
    assert api.get("/widgets?limit=&offset=").json() == {"limit": 50, "offset": 0}


def test_routes_match_case_insensitively(api: httpx.Client) -> None:
    assert api.get("/WIDGETS", params={"limit": 2}).status_code == 200


def test_log_records_carry_the_request_id(
    api: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    from api.utils.logs import configure_logging

    configure_logging()
    with caplog.at_level("INFO", logger="api"):
        response = api.post("/widgets", json={"name": "taken", "size": 1})
    request_id = response.headers["X-Request-ID"]
    records = [r for r in caplog.records if r.name == "api.http"]
    assert records
    assert all(vars(record)["request_id"] == request_id for record in records)


def test_database_lost_mid_request_is_503_not_500(
    client: httpx.Client, session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import create_engine

    from api import db
    from tests.factories import auth_headers, create_user

    headers = auth_headers(create_user(session))
    gone = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/gone")
    monkeypatch.setattr(db, "get_bind", lambda: gone)
    response = client.get("/me", headers=headers)
    body = assert_problem(response, 503, "database_unavailable")
    assert "try again" in body["detail"]
    assert "127.0.0.1" not in response.text


def test_error_responses_carry_cors_headers_for_allowed_origins(api: httpx.Client) -> None:
    origin = {"Origin": "https://app.axly.pro"}
    for response in (
        api.get("/private", headers=origin),
        api.post("/widgets", json={"name": ""}, headers=origin),
        api.get("/boom", headers=origin),
    ):
        assert response.status_code >= 400
        assert response.headers["Access-Control-Allow-Origin"] == "https://app.axly.pro"
        assert "Retry-After" in response.headers["Access-Control-Expose-Headers"]


def test_logs_leave_out_query_strings(api: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="api"):
        api.get("/widgets", params={"limit": "1000", "q": "my private words"})
    assert "my private words" not in caplog.text
    assert "GET /api/widgets -> 422" in caplog.text


def test_responses_forbid_content_sniffing(api: httpx.Client) -> None:
    assert api.get("/widgets").headers["X-Content-Type-Options"] == "nosniff"


def test_deeply_nested_json_is_400_not_500(api: httpx.Client) -> None:
    nested = b"[" * 9_000 + b"]" * 9_000  # under MAX_JSON_ITEMS, over the parser's depth
    response = api.put(
        "/widgets/3f2504e0-4f89-11d3-9a0c-0305e82c3301",
        content=nested,
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 400, "malformed_json")


def test_database_errors_do_not_carry_query_parameters(connection) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with pytest.raises(DBAPIError) as error, connection.begin_nested():
        connection.execute(text("INSERT INTO no_such_table VALUES (:value)"), {"value": "secret"})
    assert "secret" not in str(error.value)  # what a logged traceback would show


def declare(route: str, handler, **options) -> None:
    Router("test").operation("GET", route, summary="Declared", **options)(handler)


def takes_name(request: Request, name: str) -> None: ...


@pytest.mark.parametrize(
    "route",
    [
        "things/{name:int}",  # host constraints: the app would never see a malformed value
        "things/{name:guid}",
        "things/{name?}",  # optional and catch-all parameters
        "things/{*name}",
        "things/{name=x}",
        "things/x{name}",  # a parameter inside a segment
        "things/{name}.json",
        "things//{name}",
        "/things/{name}",
        "things/{name}/",
        "things/{name}/{name}",
    ],
)
def test_router_refuses_route_forms_other_than_literals_and_plain_parameters(route: str) -> None:
    with pytest.raises(RouteError, match="Route"):
        declare(route, takes_name)


def untyped_name(request: Request, name) -> None: ...


def int_name(request: Request, name: int) -> None: ...


def no_return_annotation(request: Request, name: str): ...


def raw_request(request: func.HttpRequest, name: str) -> None: ...


def any_body(request: Request[Any], name: str) -> None: ...


def extra_parameter(request: Request, name: str, other: str) -> None: ...


def returns_widget(request: Request, name: str) -> WidgetOut:
    return WidgetOut(name=name, size=1)


@pytest.mark.parametrize(
    ("handler", "options", "problem"),
    [
        (untyped_name, {}, "type 'name' as uuid.UUID, str or Annotated[str, ...]"),
        (int_name, {}, "type 'name' as uuid.UUID, str or Annotated[str, ...]"),
        (no_return_annotation, {}, "annotate what the handler returns"),
        (
            raw_request,
            {},
            "typed Request, DbRequest, UserRequest, ReadRequest, SlowUserRequest or SlowRequest",
        ),
        (any_body, {}, "pydantic models"),
        (extra_parameter, {}, "must be the route's"),
        (takes_name, {"response": WidgetOut}, "answers 204"),
        (takes_name, {"status": 202}, "answers 204"),
        (returns_widget, {"status": 204}, "declaring the handler `-> None`"),
    ],
)
def test_router_refuses_handlers_whose_signature_does_not_declare_the_operation(
    handler, options: dict, problem: str
) -> None:
    with pytest.raises(RouteError, match=re.escape(problem)):
        declare("things/{name}", handler, **options)


def reads_name(request: ReadRequest, name: str) -> None: ...


def test_a_read_request_serves_a_get_alone() -> None:
    Router("test").operation("GET", "things/{name}", summary="Read")(reads_name)
    with pytest.raises(RouteError, match="a ReadRequest serves a GET"):
        Router("test").operation("DELETE", "things/{name}", summary="Write")(reads_name)


def test_one_method_on_one_route_is_declared_once() -> None:
    twice = Router("test")
    twice.operation("GET", "things/{name}", summary="First")(takes_name)
    with pytest.raises(RouteError, match="declared twice"):
        twice.operation("GET", "things/{name}", summary="Again")(takes_name)


def test_only_operations_that_take_a_session_touch_the_database(
    api: httpx.Client, override_settings
) -> None:
    override_settings(DB_URI="postgresql://postgres@127.0.0.1:1/gone")
    assert api.get("/widgets").status_code == 200  # Request: no session, no database
    assert_problem(api.get("/counted"), 503, "database_unavailable")


def test_a_slow_request_commits_each_unit_of_work_on_its_own(api: httpx.Client, session) -> None:
    from tests.factories import auth_headers, count, create_user

    user = create_user(session)
    assert_problem(api.post("/steps", json={"name": "first", "size": 1}), 401, "not_authenticated")
    both = api.post("/steps", json={"name": "both", "size": 1}, headers=auth_headers(user))
    failed = api.post("/steps", json={"name": "kept", "size": 2}, headers=auth_headers(user))
    assert both.status_code == 204
    assert_problem(failed, 409, "conflict")
    makes = session.scalars(
        select(Vehicle.make).where(Vehicle.user_id == user.id).order_by(Vehicle.created_at)
    ).all()
    assert makes == ["both", "second", "kept"]  # the failed step alone was rolled back
    assert count(session, Vehicle) == 3


@pytest.mark.parametrize(("name", "status"), [("kept", 409), ("declined", 409), ("made", 200)])
def test_only_a_success_keeps_its_idempotency_key(
    api: httpx.Client, session, name: str, status: int
) -> None:
    """Whatever way a request fails — raising with its writes kept, or answering an error
    without raising — its key is not kept, so the retry runs again."""
    from tests.factories import auth_headers, count, create_user

    user = create_user(session)
    headers = auth_headers(user) | {"Idempotency-Key": "generic-key-1"}
    first = api.post("/keyed", json={"name": name, "size": 1}, headers=headers)
    again = api.post("/keyed", json={"name": name, "size": 1}, headers=headers)
    assert first.status_code == again.status_code == status
    replayed = status == 200
    assert ("Idempotent-Replayed" in again.headers) is replayed
    assert count(session, Vehicle, Vehicle.user_id == user.id) == (1 if replayed else 2)


def test_a_db_request_runs_in_the_invocations_session(api: httpx.Client, connection) -> None:
    assert api.get("/counted").json() == {"one": 1}


def takes_widget(request: Request[Widget]) -> None: ...


class WidgetForm(Widget):
    """A widget as multipart/form-data (the same fields)."""


class Unrelated(InputModel):
    name: str


def no_parts(req: func.HttpRequest) -> dict[str, Any]:
    return {}


def test_a_form_model_is_a_kind_of_the_json_body() -> None:
    """A handler reads either body through one type, so the form's model subclasses it."""
    with pytest.raises(RouteError, match="a form's model subclasses the body's model"):
        declare("forms", takes_widget, form=Form(Unrelated, no_parts))
    declare("forms", takes_widget, form=Form(WidgetForm, no_parts))
