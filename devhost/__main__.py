"""`python -m devhost [--host 127.0.0.1] [--port 7071]`: our stand-in for `func start`.

Run it from the repository root: like Core Tools it reads ./local.settings.json and
./host.json, then imports `app` from ./function_app.py.
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from devhost.host import FunctionHost, create_app
from devhost.server import serve
from devhost.settings import load_local_settings, read_route_prefix

DEFAULT_PORT = 7071
logger = logging.getLogger("devhost")


@dataclass(frozen=True)
class DevServer:
    """What `main` serves: the WSGI app and the address to bind."""

    app: FunctionHost
    host: str
    port: int


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; the port falls back to $DEVHOST_PORT, then 7071 (Core Tools')."""
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (127.0.0.1)")
    parser.add_argument(
        "--port",
        type=int,
        default=os.environ.get("DEVHOST_PORT", DEFAULT_PORT),
        help=f"port to listen on ($DEVHOST_PORT or {DEFAULT_PORT})",
    )
    return parser.parse_args(argv)


def build(argv: Sequence[str] | None = None) -> DevServer:
    """Everything `python -m devhost` does before serving, separate so tests can call it.

    Settings are loaded before function_app is imported because the app reads its
    configuration from the environment at import time, exactly as under the Functions host.
    """
    args = parse_args(argv)
    load_local_settings()
    function_app = importlib.import_module("function_app").app
    app = create_app(function_app, route_prefix=read_route_prefix())
    return DevServer(app=app, host=args.host, port=args.port)


DEV_DATABASE = "axly"


def prepare_database(embedded_database: str = DEV_DATABASE) -> None:
    """Use the embedded PostgreSQL's `embedded_database` unless DB_URI is set, then migrate
    it as the first request would, so `make dev` reports a broken database at once rather
    than on first use."""
    if not os.environ.get("DB_URI"):
        from devhost.database import embedded_server, ensure_database

        os.environ["DB_URI"] = ensure_database(embedded_server(), embedded_database)
        logger.info("Using the embedded PostgreSQL (data in .pgdata/)")
    from api.db import schema_status

    status = schema_status()
    if status.ready:
        logger.info("Database schema at %s", status.revision)
    else:
        logger.error("Database not ready: %s (see /api/health)", status.error)


def describe(server: DevServer) -> list[str]:
    """One line per function, in Core Tools' format: `name: [GET,POST] http://.../api/route`."""
    shown_host = _display_host(server.host)
    lines = []
    for function in server.app.functions:
        methods = "" if function.methods is None else f" [{','.join(function.methods)}]"
        url = f"http://{shown_host}:{server.port}/{function.route}"
        lines.append(f"  {function.name}:{methods} {url}")
    return lines


def _display_host(host: str) -> str:
    """Show loopback and wildcard binds as "localhost", as Core Tools prints its URLs."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name
        return host
    return "localhost" if address.is_loopback or address.is_unspecified else host


def main(argv: Sequence[str] | None = None) -> None:
    """Build the app, list its functions and serve until interrupted."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # SIGTERM ends the process through SystemExit, so atexit handlers (which stop the
    # embedded PostgreSQL) run as they do on Ctrl+C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = build(argv)
    prepare_database()
    logger.info("Functions:")
    for line in describe(server):
        logger.info("%s", line)
    base = f"http://{_display_host(server.host)}:{server.port}/{read_route_prefix()}"
    logger.info("API docs: %s/docs  ·  health: %s/health", base, base)
    serve(server.app, host=server.host, port=server.port, threads=8)


if __name__ == "__main__":
    main()
