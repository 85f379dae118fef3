"""Route templates and selection behave like the Azure Functions host (see devhost/routing.py
for where in the host's code each rule comes from)."""

from __future__ import annotations

import pytest

from devhost.routing import (
    Route,
    RouteMatch,
    Router,
    RouteTemplateError,
    check_reserved,
    compile_template,
    split_path,
)


def match(template: str, path: str) -> dict[str, str] | None:
    return compile_template(template).match(split_path(path))


def router(*routes: tuple[str, str, str | None]) -> Router[str]:
    """A router of (function name, template, comma-separated methods); targets are names."""
    return Router(
        Route(
            name=name,
            template=compile_template(text),
            methods=None if methods is None else frozenset(methods.split(",")),
            target=name,
        )
        for name, text, methods in routes
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
    assert match("items/{id}", "/items/abc") == {"id": "abc"}
    assert match("items/{id}", "/items") is None
    assert match("items/{id}", "/items/a/b") is None
    assert match("items/{id}/x", "/items//x") is None


def test_parameter_values_keep_their_case_and_name():
    assert match("{Kind}/{ID}", "/Cars/AbC") == {"Kind": "Cars", "ID": "AbC"}


@pytest.mark.parametrize(
    "template",
    [
        "a//b",
        "/a",
        "{a}/{a}",
        "{id:guid}",  # constraints: the app checks types itself (DECISIONS.md)
        "{id:int}",
        "{name?}",  # optional
        "{*rest}",  # catch-all
        "{**rest}",
        "{}",
        "{a=1}",
        "file-{id}",  # a parameter inside a segment
        "{a}.{b}",
        "{a",
        "a}",
        "a?b",
    ],
)
def test_anything_but_literals_and_plain_parameters_is_refused(template):
    with pytest.raises(RouteTemplateError):
        compile_template(template)


@pytest.mark.parametrize("route", ["admin", "Admin/x", "administrators", "/runtime/y"])
def test_the_hosts_reserved_routes_are_refused(route):
    with pytest.raises(RouteTemplateError, match="built-in"):
        check_reserved(route)


def test_ordinary_routes_are_not_reserved():
    check_reserved("vehicles/{vehicle_id}")
    check_reserved("my-admin")


def test_the_first_route_in_function_name_order_wins_not_the_most_literal():
    routes = router(("b_new", "items/new", "GET"), ("a_item", "items/{id}", "GET"))
    assert routes.resolve("GET", "/items/new") == RouteMatch("a_item", {"id": "new"})
    swapped = router(("a_new", "items/new", "GET"), ("b_item", "items/{id}", "GET"))
    assert swapped.resolve("GET", "/items/new") == RouteMatch("a_new", {})
    assert swapped.resolve("GET", "/items/7") == RouteMatch("b_item", {"id": "7"})


def test_function_names_sort_ordinally_ignoring_case_as_dotnet_does():
    """OrdinalIgnoreCase compares upper-cased characters, so "_" (0x5F) sorts after "Z"."""
    routes = router(("item_x", "{a}", None), ("ITEMS", "{b}", None))
    assert routes.resolve("GET", "/x") == RouteMatch("ITEMS", {"b": "x"})


def test_a_wrong_method_does_not_match_so_the_next_route_may():
    routes = router(("a_new", "items/new", "GET"), ("b_item", "items/{id}", "GET,POST"))
    assert routes.resolve("post", "/items/new") == RouteMatch("b_item", {"id": "new"})
    assert routes.resolve("DELETE", "/items/new") is None  # no 405: the host's empty 404


def test_router_without_method_list_accepts_any_method():
    assert router(("any", "any", None)).resolve("PURGE", "/any") == RouteMatch("any", {})


def test_router_returns_none_when_no_template_matches():
    assert router(("items", "items/{id}", "GET")).resolve("GET", "/items") is None


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("items", "GET"), ("ITEMS", "GET,POST")),
        (("items/{id}", None), ("items/{id}", "DELETE")),
    ],
)
def test_same_route_with_a_common_method_conflicts_at_start_up(first, second):
    with pytest.raises(RouteTemplateError, match="conflicts"):
        router(("one", *first), ("two", *second))


def test_same_route_with_disjoint_methods_is_fine():
    routes = router(("read", "items", "GET"), ("write", "items", "POST"))
    assert routes.resolve("POST", "/items") == RouteMatch("write", {})
