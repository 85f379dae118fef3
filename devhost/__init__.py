"""Local stand-in for the Azure Functions host (Core Tools), for development and tests only.

Never deployed: it serves our `FunctionApp` over WSGI with the host's routing rules.
Run it with `python -m devhost`; in tests use `create_app(app)` with httpx's WSGITransport.
"""

from devhost.host import create_app

__all__ = ["create_app"]
