"""Diagnose routes."""

from api.endpoints import Router

router = Router("diagnose")
