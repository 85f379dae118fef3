"""The Azure functions: one per route template, indexed from light declarations.

Indexing (`function_app.py`, the worker's `get_functions()`) needs each function's name,
route and methods, nothing more, so an area is declared as its routes and their methods
(`Area`, listed in api/routes/__init__.py) and its module — handlers, schemas, services,
models — is imported when one of its functions is first invoked. A cold start then imports
neither pydantic models nor SQLAlchemy mappings, and a first request imports only its own
area's. This module imports nothing heavy: azure.functions and the telemetry front door.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, partial
from typing import TYPE_CHECKING

import azure.functions as func

from api import telemetry

if TYPE_CHECKING:
    from api.endpoints import Router

ROUTE_PREFIX = "api"  # host.json extensions.http.routePrefix (a test keeps them equal)


def function_name_for(route: str) -> str:
    """A unique, stable Azure function name per route template (`vehicles/{vehicle_id}`
    becomes `vehicles_vehicle_id`)."""
    return re.sub(r"[^0-9A-Za-z]+", "_", route).strip("_") or "root"


def add_function(
    blueprint: func.Blueprint,
    route: str,
    methods: Iterable[str],
    dispatch: Callable[[func.HttpRequest], func.HttpResponse],
) -> None:
    """Register the function serving `route` for `methods` with `dispatch`."""

    # `context`: the worker passes the invocation context to a function that names it (its
    # trace context parents the request's telemetry).
    def handle(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return telemetry.serve(req, context, f"/{ROUTE_PREFIX}/{route}", lambda: dispatch(req))

    name = function_name_for(route)
    handle.__name__ = handle.__qualname__ = name
    blueprint.function_name(name=name)(blueprint.route(route=route, methods=list(methods))(handle))


@dataclass(frozen=True)
class Area:
    """An area of the API as indexing sees it: the module whose `router` serves it, and
    each of its route templates with their methods, in declaration order."""

    module: str
    routes: Mapping[str, tuple[str, ...]]

    def blueprint(self) -> func.Blueprint:
        blueprint = func.Blueprint()
        for route, methods in self.routes.items():
            add_function(blueprint, route, methods, partial(self._dispatch, route))
        return blueprint

    def _dispatch(self, route: str, req: func.HttpRequest) -> func.HttpResponse:
        from api.endpoints import dispatch

        return dispatch(req, self.router.routes[route])

    @cached_property
    def router(self) -> Router:
        """The area's Router, its module imported; RouteError unless it serves exactly the
        declared routes and methods (a test imports every area, so a declaration that
        drifted from its handlers fails there, not in production)."""
        from api.endpoints import RouteError

        router: Router = importlib.import_module(self.module).router
        served = {route: sorted(by_method) for route, by_method in router.routes.items()}
        declared = {route: sorted(methods) for route, methods in self.routes.items()}
        if served != declared:
            raise RouteError(
                f"{self.module} serves {served}, but api/routes/__init__.py declares {declared}"
            )
        return router
