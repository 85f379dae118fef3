"""Local stand-in for the Azure Functions host (Core Tools), for development and tests only.

Never deployed: it serves our `FunctionApp` over WSGI with the host's routing rules.
Run it with `python -m devhost`; in tests use `devhost.host.create_app(app)` with httpx's
WSGITransport. Importing the package imports nothing else (the cold-start bench takes
`devhost.invocation` alone, without the WSGI host).
"""
