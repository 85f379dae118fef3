"""Auth routes."""

from api.endpoints import Router

router = Router("auth")
