"""Route templates and route selection, as the Azure Functions host does them.

The app's Router registers only literal segments and plain `{name}` parameters with the host
(DECISIONS.md: types are checked by the app, never by host constraints), so that is all
devhost routes; any other template is refused at start-up instead of routing differently
from Azure.

Read in Azure/azure-functions-host v4.1037.0 (commit 89dc438) and
Azure/azure-webjobs-sdk-extensions (commit 2e7550f):
- Every HTTP function becomes one ASP.NET Core `Route`, its methods an
  `HttpMethodRouteConstraint` (host: src/WebJobs.Script.WebHost/WebScriptHostHttpRoutesManager.cs).
  A wrong method therefore does not match at all: the next route is tried, else 404.
- The routes sit in one `RouteCollection` in the order of the function metadata
  (extensions: src/WebJobs.Extensions.Http/Routing/WebJobsRouteBuilder.cs, `Build`), which
  the host sorts by function name, ordinal ignoring case (host:
  src/WebJobs.Script/Host/FunctionMetadataManager.cs, `LoadFunctionMetadata`). The first
  route that matches wins: with overlapping templates, the function whose name sorts first.
- Literal segments compare ignoring case and `{name}` takes one non-empty segment
  (ASP.NET Core's TemplateMatcher); one trailing slash is ignored.
- Routes starting with "admin" or "runtime" are refused, and two functions with the same
  route (ignoring case) and a method in common conflict (host:
  src/WebJobs.Script/Host/ScriptHost.cs, `ValidateHttpFunction`, `HttpRoutesConflict`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

_PARAMETER = re.compile(r"\{(\w+)\}")
_RESERVED_PREFIXES = ("admin", "runtime")


class RouteTemplateError(ValueError):
    """A route the host would refuse, or one devhost cannot route exactly as the host does."""


@dataclass(frozen=True)
class Parameter:
    """A `{name}` segment: exactly one non-empty path segment."""

    name: str


# A literal segment is stored lower-cased: the host compares literals ignoring case.
Segment = str | Parameter


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template; build it with `compile_template`."""

    text: str
    segments: tuple[Segment, ...]

    def match(self, path_segments: Sequence[str]) -> dict[str, str] | None:
        """Return the route values when the decoded `path_segments` match, else None."""
        if len(path_segments) != len(self.segments):
            return None
        values: dict[str, str] = {}
        for segment, value in zip(self.segments, path_segments, strict=True):
            if isinstance(segment, Parameter):
                if not value:
                    return None
                values[segment.name] = value
            elif value.lower() != segment:
                return None
        return values


def compile_template(text: str) -> RouteTemplate:
    """Parse a route template such as `items/{id}` (no leading slash, `""` = the root).

    Raises `RouteTemplateError` for anything but literal segments and `{name}` parameters
    (constraints, optional and catch-all parameters, parameters inside a segment), for empty
    segments and for a parameter name used twice.
    """
    segments = tuple(_compile_segment(text, raw) for raw in (text.split("/") if text else []))
    names = [segment.name for segment in segments if isinstance(segment, Parameter)]
    if len(names) != len(set(names)):
        raise RouteTemplateError(f"Route {text!r}: a parameter name is used twice")
    return RouteTemplate(text=text, segments=segments)


def _compile_segment(template: str, raw: str) -> Segment:
    if parameter := _PARAMETER.fullmatch(raw):
        return Parameter(parameter[1])
    if not raw or any(char in raw for char in "{}?"):
        raise RouteTemplateError(
            f"Route {template!r}: segment {raw!r} is not a literal or a plain {{name}}"
            " parameter (the only forms the app registers with the host)"
        )
    return raw.lower()


def check_reserved(route: str) -> None:
    """Refuse a route (without the route prefix) in the host's reserved space, as it does."""
    if route.strip("/").lower().startswith(_RESERVED_PREFIXES):
        raise RouteTemplateError(
            f"Route {route!r} conflicts with the host's built-in routes (admin…, runtime…)"
        )


def split_path(path: str) -> list[str]:
    """Split a decoded URL path into segments, ignoring one trailing slash as the host does."""
    trimmed = path.removeprefix("/").removesuffix("/")
    return trimmed.split("/") if trimmed else []


@dataclass(frozen=True)
class Route(Generic[T]):
    """A function's template, the HTTP methods it accepts (None = any), its name and target."""

    name: str
    template: RouteTemplate
    methods: frozenset[str] | None
    target: T


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    """The selected route's target and its route values (decoded strings)."""

    target: T
    values: dict[str, str]


class Router(Generic[T]):
    """Selects a request's route: the first, in function-name order, whose template and
    methods both match. Refuses conflicting routes at construction."""

    def __init__(self, routes: Iterable[Route[T]]) -> None:
        # .NET's OrdinalIgnoreCase compares upper-cased characters: "_" sorts after letters.
        self._routes = sorted(routes, key=lambda route: route.name.upper())
        for index, route in enumerate(self._routes):
            for earlier in self._routes[:index]:
                if _conflict(earlier, route):
                    raise RouteTemplateError(
                        f"Route {route.template.text!r} of {route.name!r} conflicts with"
                        f" the one of {earlier.name!r}"
                    )

    def resolve(self, method: str, path: str) -> RouteMatch[T] | None:
        """Return the match, or None (the host's 404)."""
        method = method.upper()
        segments = split_path(path)
        for route in self._routes:
            if route.methods is not None and method not in route.methods:
                continue
            values = route.template.match(segments)
            if values is not None:
                return RouteMatch(route.target, values)
        return None


def _conflict(first: Route[T], second: Route[T]) -> bool:
    if first.template.text.lower() != second.template.text.lower():
        return False
    return first.methods is None or second.methods is None or bool(first.methods & second.methods)
