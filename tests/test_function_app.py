"""The app indexes as the Azure Python worker does: import function_app, get_functions()."""

import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import azure.functions as func
import pytest

from api.endpoints import RouteError
from api.functions import ROUTE_PREFIX, Area
from api.routes import AREAS, routers

# Every route the mobile app and other clients are built against, with its methods.
EXPECTED_ROUTES = {
    "health": {"GET"},
    "openapi.json": {"GET"},
    "docs": {"GET"},
    "docs/{asset}": {"GET"},
    "request_pin": {"POST"},
    "confirm_signup": {"POST"},
    "login": {"POST"},
    "auth/refresh": {"POST"},
    "logout": {"POST"},
    "request_password_reset_pin": {"POST"},
    "confirm_password_reset": {"POST"},
    "change_password": {"POST"},
    "me": {"GET", "DELETE"},
    "vehicles": {"GET", "POST"},
    "vehicles/{vehicle_id}": {"GET", "PATCH", "PUT", "DELETE"},
    "vehicles/{vehicle_id}/mods": {"GET", "POST"},
    "vehicles/{vehicle_id}/mods/{mod_id}": {"GET", "PATCH", "PUT", "DELETE"},
    "diagnose2": {"POST"},
    "Diagnose": {"GET", "POST"},
    "conversations": {"GET"},
    "conversations/{conversation_id}": {"GET", "PATCH", "DELETE"},
}


def http_trigger(function: func.Function):
    (trigger,) = [b for b in function.get_bindings() if b.type == "httpTrigger"]
    return trigger


def test_expected_routes_and_methods(indexed_functions: list[func.Function]) -> None:
    routes = {}
    for function in indexed_functions:
        trigger = http_trigger(function)
        routes[trigger.route] = {
            str(m.value if hasattr(m, "value") else m) for m in trigger.methods
        }
    for route, methods in EXPECTED_ROUTES.items():
        assert routes[route] == methods, route


def test_every_function_is_anonymous_with_unique_name_and_explicit_route(
    indexed_functions: list[func.Function],
) -> None:
    names = [f.get_function_name() for f in indexed_functions]
    assert len(names) == len({n.lower() for n in names})
    for function in indexed_functions:
        trigger = http_trigger(function)
        assert trigger.auth_level == func.AuthLevel.ANONYMOUS
        assert trigger.route
        assert trigger.methods
        assert not trigger.route.lower().startswith("admin")  # reserved by the host


def test_parameters_match_binding_names(indexed_functions: list[func.Function]) -> None:
    """The worker's rules (functions.py in azure-functions-python-worker): every parameter is
    a binding, except `context`, whose resolved annotation must be a class named Context."""
    for function in indexed_functions:
        bindings = {b.name for b in function.get_bindings() if b.name != "$return"}
        user_function = function.get_user_function()
        parameters = set(inspect.signature(user_function).parameters) - {"context"}
        assert parameters == bindings, function.get_function_name()
        assert typing.get_type_hints(user_function)["context"] is func.Context


def test_function_json_is_serialisable_for_the_host(
    indexed_functions: list[func.Function],
) -> None:
    for function in indexed_functions:
        document = json.loads(function.get_function_json())
        assert document["scriptFile"] == "function_app.py"


def test_route_prefix_matches_host_json() -> None:
    host = json.loads(Path("host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensions"]["http"]["routePrefix"] == ROUTE_PREFIX
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"


def test_each_area_serves_exactly_the_routes_it_is_indexed_with() -> None:
    """Indexing reads api/routes/__init__.py; each area's handlers must agree with it."""
    for area, router in zip(AREAS, routers(), strict=True):
        served = {route: set(by_method) for route, by_method in router.routes.items()}
        assert served == {route: set(methods) for route, methods in area.routes.items()}


def test_an_area_declared_otherwise_than_its_handlers_refuses_to_serve() -> None:
    drifted = Area("api.routes.health", {"health": ("GET", "POST")})
    with pytest.raises(RouteError, match="declares"):
        _ = drifted.router


# A fresh interpreter, as a worker: index, then serve GET /api/health as the worker calls it.
INDEX_THEN_HEALTH = """
import json, sys
import azure.functions as func
import function_app
from devhost.invocation import invocation_context

def loaded():
    return sorted(m for m in sys.modules if m.startswith(("api.", "pydantic", "sqlalchemy")))

functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
indexed = loaded()
request = func.HttpRequest("GET", "http://local/api/health", headers={}, body=b"")
status = functions["health"](req=request, context=invocation_context("health", {})).status_code
print(json.dumps({"indexed": indexed, "served": loaded(), "status": status}))
"""


@pytest.mark.slow
def test_indexing_imports_no_area_and_a_request_only_its_own() -> None:
    run = json.loads(
        subprocess.run(
            [sys.executable, "-c", INDEX_THEN_HEALTH], capture_output=True, check=True, timeout=60
        ).stdout
    )
    assert run["status"] in (200, 503)  # whatever the database says: served by its area
    assert not [m for m in run["indexed"] if m.startswith(("pydantic", "sqlalchemy"))]
    assert not [m for m in run["indexed"] if m.startswith(("api.routes.", "api.models"))]
    assert "api.routes.health" in run["served"]
    others = ("api.routes.auth", "api.routes.vehicles", "api.routes.diagnose")
    assert not [m for m in run["served"] if m.startswith(others)]
