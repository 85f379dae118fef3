"""The areas of the API as indexing sees them: each area's module and its routes with their
methods. function_app.py registers one blueprint per area from these declarations alone; an
area's module (its handlers, schemas and services) is imported by the first invocation of
one of its functions (api/functions.py), and refuses to serve unless it declares exactly
these routes and methods."""

from __future__ import annotations

from typing import TYPE_CHECKING

from api.functions import Area

if TYPE_CHECKING:
    from api.endpoints import Router

AREAS = (
    Area(
        "api.routes.health",
        {
            "health": ("GET",),
            "openapi.json": ("GET",),
            "docs": ("GET",),
            "docs/{asset}": ("GET",),
        },
    ),
    Area(
        "api.routes.auth",
        {
            "request_pin": ("POST",),
            "confirm_signup": ("POST",),
            "login": ("POST",),
            "auth/refresh": ("POST",),
            "logout": ("POST",),
            "request_password_reset_pin": ("POST",),
            "confirm_password_reset": ("POST",),
            "change_password": ("POST",),
            "me": ("GET", "DELETE"),
        },
    ),
    Area(
        "api.routes.vehicles",
        {
            "vehicles": ("GET", "POST"),
            "vehicles/{vehicle_id}": ("GET", "PATCH", "PUT", "DELETE"),
            "vehicles/{vehicle_id}/mods": ("GET", "POST"),
            "vehicles/{vehicle_id}/mods/{mod_id}": ("GET", "PATCH", "PUT", "DELETE"),
        },
    ),
    Area(
        "api.routes.diagnose",
        {
            "diagnose2": ("POST",),
            "Diagnose": ("GET", "POST"),
            "me/usage": ("GET",),
            "dtc/{code}": ("GET",),
            "conversations": ("GET",),
            "conversations/{conversation_id}": ("GET", "PATCH", "DELETE"),
            "conversations/{conversation_id}/attachments/{attachment_id}": ("GET",),
        },
    ),
)


def routers() -> list[Router]:
    """Every area's Router, in declaration order, each area imported (the OpenAPI document
    and tests need them all; serving needs only the area invoked)."""
    return [area.router for area in AREAS]
