"""Route templates and route selection, following the Azure Functions host.

The Functions host routes with ASP.NET Core route templates, so code that works under
`func start` or in Azure depends on details this module reproduces: literals compare
case-insensitively, `{name}` takes exactly one path segment, `{name:int}`-style constraints
that fail make the route not match (404, not 400), `{name?}` may be absent at the end, and
`{*rest}` takes the rest of the path. When several templates match, ASP.NET Core's inbound
precedence picks the winner, so `items/new` wins over `items/{id}` whatever the declaration
order.

Only what our function apps need is supported; anything else in a template (defaults,
constraints with arguments, complex segments such as `{a}.{b}`) raises `RouteTemplateError`
at start-up instead of silently routing differently from Azure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")

# .NET's TryParse methods (used by the route constraints) trim these characters.
_DOTNET_WHITESPACE = "\t\n\v\f\r "
_INTEGER = re.compile(r"[\t-\r ]*[+-]?[0-9]+[\t-\r ]*")
_HEX_GUID = (
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"  # "D" format
)
# Guid.TryParse formats D, N, B and P (the rarely used "X" format is not accepted).
_GUID = re.compile(rf"{_HEX_GUID}|[0-9a-fA-F]{{32}}|\{{{_HEX_GUID}\}}|\({_HEX_GUID}\)")
_ALPHA = re.compile(r"[A-Za-z]*")
_PARAMETER_NAME = re.compile(r"[^{}/?*:=]+")


class RouteTemplateError(ValueError):
    """A route template that the host would reject or that devhost cannot route faithfully."""


def _integer_constraint(bits: int) -> Callable[[str], bool]:
    """Build the `int`/`long` check: an optionally signed decimal that fits in `bits` bits."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def check(value: str) -> bool:
        return _INTEGER.fullmatch(value) is not None and low <= int(value) <= high

    return check


def _is_guid(value: str) -> bool:
    return _GUID.fullmatch(value.strip(_DOTNET_WHITESPACE)) is not None


def _is_alpha(value: str) -> bool:
    return _ALPHA.fullmatch(value) is not None


def _is_bool(value: str) -> bool:
    return value.strip(_DOTNET_WHITESPACE).lower() in {"true", "false"}


# Constraint names are case-insensitive in ASP.NET Core, hence the lower-case keys.
_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "alpha": _is_alpha,
    "bool": _is_bool,
    "guid": _is_guid,
    "int": _integer_constraint(32),
    "long": _integer_constraint(64),
}


@dataclass(frozen=True)
class LiteralSegment:
    """A fixed path segment, stored lower-cased because the host compares ignoring case."""

    text: str


@dataclass(frozen=True)
class Parameter:
    """A `{name}` segment; `catch_all` marks `{*name}`, which takes the rest of the path."""

    name: str
    constraints: tuple[Callable[[str], bool], ...] = ()
    optional: bool = False
    catch_all: bool = False

    def bind(self, value: str, values: dict[str, str]) -> bool:
        """Record `value` under this parameter's name if it is acceptable.

        An empty value is acceptable only for optional and catch-all parameters, and is then
        left out of `values` (an absent optional has no route value, as in ASP.NET Core).
        """
        if not value:
            return self.optional or self.catch_all
        if not all(check(value) for check in self.constraints):
            return False
        values[self.name] = value
        return True


Segment = LiteralSegment | Parameter


@dataclass(frozen=True)
class RouteTemplate:
    """A compiled route template; build it with `compile_template`."""

    text: str
    segments: tuple[Segment, ...]

    @property
    def precedence(self) -> tuple[int, ...]:
        """ASP.NET Core's inbound precedence: lower sorts first, compared segment by segment.

        Per segment: literal 1, constrained parameter 2, parameter 3, constrained catch-all 4,
        catch-all 5. Comparing these tuples is the same as comparing ASP.NET's decimal
        precedence, so literals beat parameters and templates with more leading literals win.
        """
        return tuple(_precedence_digit(segment) for segment in self.segments)

    def match(self, path_segments: Sequence[str]) -> dict[str, str] | None:
        """Return the route values when the decoded `path_segments` match, else None."""
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if isinstance(segment, Parameter) and segment.catch_all:
                rest = "/".join(path_segments[index:])
                return values if segment.bind(rest, values) else None
            if index >= len(path_segments):
                # Only a trailing optional parameter may be missing (enforced at compile time).
                return values if isinstance(segment, Parameter) and segment.optional else None
            if not _segment_matches(segment, path_segments[index], values):
                return None
        return values if len(path_segments) == len(self.segments) else None


def _precedence_digit(segment: Segment) -> int:
    if isinstance(segment, LiteralSegment):
        return 1
    digit = 5 if segment.catch_all else 3
    return digit - 1 if segment.constraints else digit


def _segment_matches(segment: Segment, value: str, values: dict[str, str]) -> bool:
    if isinstance(segment, LiteralSegment):
        return value.lower() == segment.text
    return segment.bind(value, values)


def compile_template(text: str) -> RouteTemplate:
    """Parse a route template such as `items/{id:guid}` (no leading slash, `""` = root).

    Raises `RouteTemplateError` for templates the host rejects (empty segments, optional or
    catch-all parameters that are not last, duplicate names) and for syntax devhost does not
    implement, so a route never silently behaves differently from Azure.
    """
    raw_segments = text.split("/") if text else []
    segments = tuple(_compile_segment(text, raw) for raw in raw_segments)
    names = [segment.name for segment in segments if isinstance(segment, Parameter)]
    if len(names) != len(set(names)):
        raise RouteTemplateError(f"Route {text!r}: a parameter name is used twice")
    for segment in segments[:-1]:
        if isinstance(segment, Parameter) and (segment.optional or segment.catch_all):
            raise RouteTemplateError(
                f"Route {text!r}: {{{segment.name}}} must be the last segment"
                " (optional and catch-all parameters are only allowed at the end)"
            )
    return RouteTemplate(text=text, segments=segments)


def _compile_segment(template: str, raw: str) -> Segment:
    if not raw:
        raise RouteTemplateError(f"Route {template!r}: empty path segment")
    if "{" not in raw and "}" not in raw:
        return LiteralSegment(raw.lower())
    if not (raw.startswith("{") and raw.endswith("}")) or raw.count("{") != 1:
        raise RouteTemplateError(
            f"Route {template!r}: segment {raw!r} is not supported by devhost"
            " (a parameter must be the whole segment)"
        )
    return _compile_parameter(template, raw[1:-1])


def _compile_parameter(template: str, inner: str) -> Parameter:
    stars = len(inner) - len(inner.lstrip("*"))
    optional = inner.endswith("?")
    name, *constraint_names = inner.lstrip("*").removesuffix("?").split(":")
    if stars > 2 or not _PARAMETER_NAME.fullmatch(name):
        raise RouteTemplateError(f"Route {template!r}: invalid parameter {{{inner}}}")
    if stars and optional:
        raise RouteTemplateError(f"Route {template!r}: a catch-all parameter cannot be optional")
    unknown = [c for c in constraint_names if c.lower() not in _CONSTRAINTS]
    if unknown:
        raise RouteTemplateError(
            f"Route {template!r}: constraint {unknown[0]!r} is not supported by devhost"
            f" (supported: {', '.join(sorted(_CONSTRAINTS))})"
        )
    return Parameter(
        name=name,
        constraints=tuple(_CONSTRAINTS[c.lower()] for c in constraint_names),
        optional=optional,
        catch_all=bool(stars),
    )


def split_path(path: str) -> list[str]:
    """Split a decoded URL path into segments, ignoring one trailing slash as the host does."""
    trimmed = path.removeprefix("/").removesuffix("/")
    return trimmed.split("/") if trimmed else []


@dataclass(frozen=True)
class Route(Generic[T]):
    """A template, the HTTP methods it accepts (None = any) and what it routes to."""

    template: RouteTemplate
    methods: frozenset[str] | None
    target: T


@dataclass(frozen=True)
class RouteMatch(Generic[T]):
    """The selected route's target and its route values (decoded strings)."""

    target: T
    values: dict[str, str]


@dataclass(frozen=True)
class MethodNotAllowed:
    """Some template matches the path, but none of them accepts the request method."""

    allowed: tuple[str, ...]


class Router(Generic[T]):
    """Selects the route for a request, highest precedence first.

    Method filtering happens before precedence decides (as with ASP.NET Core's HTTP method
    policy), so `GET items/new` and `POST items/{id}` can coexist: `POST /items/new` reaches
    the second one.
    """

    def __init__(self, routes: Iterable[Route[T]]) -> None:
        # sorted() is stable, so equal precedence keeps declaration order.
        self._routes = sorted(routes, key=lambda route: route.template.precedence)

    def resolve(self, method: str, path: str) -> RouteMatch[T] | MethodNotAllowed | None:
        """Return the match, `MethodNotAllowed` (for a 405) or None (for a 404)."""
        method = method.upper()
        segments = split_path(path)
        allowed: set[str] = set()
        for route in self._routes:
            values = route.template.match(segments)
            if values is None:
                continue
            if route.methods is None or method in route.methods:
                return RouteMatch(route.target, values)
            allowed |= route.methods
        return MethodNotAllowed(tuple(sorted(allowed))) if allowed else None
