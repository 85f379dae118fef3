"""Route templates and selection behave like the Azure Functions host (ASP.NET Core routing)."""

from __future__ import annotations

import pytest

from devhost.routing import (
    MethodNotAllowed,
    Route,
    RouteMatch,
    Router,
    RouteTemplateError,
    compile_template,
    split_path,
)

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def match(template: str, path: str) -> dict[str, str] | None:
    return compile_template(template).match(split_path(path))


def router(*routes: tuple[str, str | None]) -> Router[str]:
    """A router whose targets are the template texts; methods are comma-separated."""
    return Router(
        Route(
            template=compile_template(text),
            methods=None if methods is None else frozenset(methods.split(",")),
            target=text,
        )
        for text, methods in routes
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [("", []), ("/", []), ("/api", ["api"]), ("/api/", ["api"]), ("/a//b", ["a", "", "b"])],
)
def test_split_path_ignores_one_leading_and_one_trailing_slash(path, expected):
    assert split_path(path) == expected


def test_literals_match_ignoring_case_both_ways():
    assert match("Api/Items", "/aPI/iTEMS") == {}
    assert match("api/items", "/api/item") is None
    assert match("api/items", "/api/items/extra") is None
    assert match("api/items", "/api") is None


def test_empty_template_matches_only_the_root():
    assert match("", "/") == {}
    assert match("", "/x") is None


def test_parameter_takes_exactly_one_non_empty_segment():
    assert match("items/{id}", "/items/a%20b") == {"id": "a%20b"}  # values are used as given
    assert match("items/{id}", "/items/abc") == {"id": "abc"}
    assert match("items/{id}", "/items") is None
    assert match("items/{id}", "/items/a/b") is None
    assert match("items/{id}/x", "/items//x") is None


def test_parameter_values_keep_their_case_and_name():
    assert match("{Kind}/{ID}", "/Cars/AbC") == {"Kind": "Cars", "ID": "AbC"}


@pytest.mark.parametrize(
    ("constraint", "value", "matches"),
    [
        ("int", "0", True),
        ("int", "-12", True),
        ("int", "+7", True),
        ("int", "2147483647", True),
        ("int", "-2147483648", True),
        ("int", "2147483648", False),
        ("int", "5.0", False),
        ("int", "1_000", False),
        ("int", "\u0663", False),  # ARABIC-INDIC DIGIT THREE: Python's int() accepts it, .NET not
        ("int", "abc", False),
        ("long", "9223372036854775807", True),
        ("long", "9223372036854775808", False),
        ("guid", GUID, True),
        ("guid", GUID.upper(), True),
        ("guid", GUID.replace("-", ""), True),
        ("guid", "{" + GUID + "}", True),
        ("guid", "(" + GUID + ")", True),
        ("guid", GUID[:-1], False),
        ("guid", "{" + GUID, False),
        ("guid", "not-a-guid", False),
        ("alpha", "abcXYZ", True),
        ("alpha", "abc1", False),
        ("alpha", "caf\u00e9", False),
        ("bool", "true", True),
        ("bool", "FALSE", True),
        ("bool", "yes", False),
        ("bool", "1", False),
    ],
)
def test_constraints_follow_dotnet_parsing(constraint, value, matches):
    expected = {"v": value} if matches else None
    assert match(f"x/{{v:{constraint}}}", f"/x/{value}") == expected


def test_constraint_names_ignore_case_and_can_be_chained():
    assert match("x/{v:INT:long}", "/x/5") == {"v": "5"}
    assert match("x/{v:int:alpha}", "/x/5") is None


def test_optional_parameter_may_be_absent_and_is_then_left_out():
    assert match("greet/{name?}", "/greet/ana") == {"name": "ana"}
    assert match("greet/{name?}", "/greet") == {}
    assert match("greet/{name?}", "/greet/") == {}
    assert match("greet/{n:int?}", "/greet") == {}
    assert match("greet/{n:int?}", "/greet/x") is None


def test_catch_all_takes_the_rest_of_the_path():
    assert match("files/{*rest}", "/files/a/b/c.txt") == {"rest": "a/b/c.txt"}
    assert match("files/{**rest}", "/files/a/b") == {"rest": "a/b"}
    assert match("files/{*rest}", "/files") == {}
    assert match("files/{*rest:alpha}", "/files/abc") == {"rest": "abc"}
    assert match("files/{*rest:alpha}", "/files/a/b") is None


@pytest.mark.parametrize(
    "template",
    [
        "a//b",
        "/a",
        "{a}/{a}",
        "{a?}/b",
        "{*a}/b",
        "{*a?}",
        "{***a}",
        "{}",
        "{a=1}",
        "{a:min(1)}",
        "{a:regex(x)}",
        "file-{id}",
        "{a}.{b}",
        "{a}{b}",
        "{a",
        "a}",
    ],
)
def test_templates_the_host_rejects_or_devhost_cannot_route_fail_loudly(template):
    with pytest.raises(RouteTemplateError):
        compile_template(template)


def test_precedence_literal_then_constrained_then_parameter_then_catch_all():
    templates = ["{*rest}", "{*rest:alpha}", "{id}", "{id:int}", "new"]
    ordered = sorted(templates, key=lambda t: compile_template(t).precedence)
    assert ordered == ["new", "{id:int}", "{id}", "{*rest:alpha}", "{*rest}"]


def test_router_prefers_literal_over_parameter_whatever_the_declaration_order():
    routes = router(("items/{id}", "GET"), ("items/new", "GET"))
    assert routes.resolve("GET", "/items/new") == RouteMatch("items/new", {})
    assert routes.resolve("GET", "/items/7") == RouteMatch("items/{id}", {"id": "7"})


def test_router_prefers_more_leading_literals():
    routes = router(("{a}/x/y", None), ("p/{b}/{c}", None))
    assert routes.resolve("GET", "/p/x/y") == RouteMatch("p/{b}/{c}", {"b": "x", "c": "y"})


def test_router_keeps_declaration_order_for_equal_precedence():
    routes = router(("{a}", None), ("{b}", None))
    assert routes.resolve("GET", "/x") == RouteMatch("{a}", {"a": "x"})


def test_router_filters_methods_before_precedence():
    routes = router(("items/new", "GET"), ("items/{id}", "GET,POST"))
    assert routes.resolve("post", "/items/new") == RouteMatch("items/{id}", {"id": "new"})


def test_router_reports_405_with_all_methods_of_matching_templates():
    routes = router(("items/new", "GET"), ("items/{id}", "PUT,DELETE"), ("other", "PATCH"))
    assert routes.resolve("POST", "/items/new") == MethodNotAllowed(("DELETE", "GET", "PUT"))


def test_router_without_method_list_accepts_any_method():
    assert router(("any", None)).resolve("PURGE", "/any") == RouteMatch("any", {})


def test_router_returns_none_when_no_template_matches():
    assert router(("items/{id:int}", "GET")).resolve("GET", "/items/x") is None
