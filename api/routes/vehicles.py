"""Vehicles routes."""

from api.endpoints import Router

router = Router("vehicles")
