"""Budget row for reads: GET /api/vehicles (20 vehicles of 5 mods) served in-process as the
worker calls the function (a func.HttpRequest and the invocation context), against the same
SQL run on one raw psycopg connection (no pool, ORM, transaction or validation), with what
the request sends to PostgreSQL recorded at the protocol level (devhost/wire.py) and its
statements as psycopg receives them, whoever runs them (a session or `api.db.Reader`)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.budgets import Row, interleaved, timed_ms

VEHICLES = 20
ROUNDS = 400


@dataclass(frozen=True)
class Garage:
    """The benchmark's garage owner and what listing their vehicles runs."""

    token: str
    direct_uri: str  # libpq form, for a raw psycopg connection
    sql: list[tuple[str, Any]]  # (statement, parameters) of one GET /api/vehicles
    round_trips: int
    statements: int


@functools.cache
def functions() -> list[Any]:
    """`app.get_functions()`, once per process as the worker does (a second call finds
    every name twice and raises); every row measured in this process shares it."""
    from function_app import app

    return app.get_functions()


def indexed() -> dict[str, Callable[..., Any]]:
    """The app's functions by name."""
    return {str(f.get_function_name()): f.get_user_function() for f in functions()}


def local_host() -> Any:
    """The local host (devhost, WSGI) over this process's one index."""
    from types import SimpleNamespace
    from typing import cast

    from devhost.host import create_app

    return create_app(cast("Any", SimpleNamespace(get_functions=functions)))


def in_process(name: str, path: str, headers: dict[str, str]) -> Callable[[], float]:
    """A call of the indexed function `name` as the worker makes it, returning how long the
    function took (ms; asserting a 200). The func.HttpRequest and the invocation context are
    built before the clock starts: the worker builds them from its gRPC message, work of the
    platform's whichever app it serves, not of this one's (the original's row is timed
    alike)."""
    import azure.functions as func

    from devhost.invocation import invocation_context

    handler = indexed()[name]

    def call() -> float:
        request = func.HttpRequest("GET", f"http://bench{path}", headers=headers, body=b"")
        context = invocation_context(name, headers)
        started = time.perf_counter()
        status: int = handler(req=request, context=context).status_code
        elapsed = (time.perf_counter() - started) * 1000
        assert status == 200, (path, status)
        return elapsed

    return call


@functools.cache
def bench_garage() -> Garage:
    """A new owner of VEHICLES vehicles in the bench database, and the SQL their listing
    runs (the statements that read data: not the transaction's settings, if any)."""
    import psycopg
    from sqlalchemy import event, make_url
    from sqlalchemy.orm import Session

    from api import db
    from api.services.auth import start_session
    from bench.garage import garage_owner, use_bench_database
    from devhost.wire import recording

    uri = use_bench_database()
    db.dispose_engine()
    db.schema_status()
    engine = db.get_engine()
    with Session(engine, expire_on_commit=False) as session:
        token = start_session(session=session, user=garage_owner(session, VEHICLES)).access_token
        session.commit()
    call = in_process("vehicles", "/api/vehicles", {"authorization": f"Bearer {token}"})
    sql: list[tuple[str, Any]] = []

    class Capturing(psycopg.Cursor[Any]):
        """Keeps what each statement sends, whoever runs it (a session or a Reader)."""

        def execute(self, query: Any, params: Any = None, **options: Any) -> Capturing:
            if "set_config" not in str(query):
                sql.append((query, params))
            return super().execute(query, params, **options)

    def capture(dbapi_connection: Any, *_: object) -> None:
        dbapi_connection.cursor_factory = Capturing

    def stop_capturing(dbapi_connection: Any, *_: object) -> None:
        dbapi_connection.cursor_factory = psycopg.Cursor

    with recording(engine) as recorder:
        call()  # warm up: connections traced from their first checkout
        recorder.take()
        event.listen(engine, "checkout", capture)
        event.listen(engine, "checkin", stop_capturing)
        call()
        event.remove(engine, "checkout", capture)
        event.remove(engine, "checkin", stop_capturing)
        wire = recorder.take()
    direct = make_url(uri).set(drivername="postgresql").render_as_string(hide_password=False)
    return Garage(token, direct, sql, wire.round_trips, wire.statements)


def vehicles() -> Row:
    import psycopg

    garage = bench_garage()
    ours = in_process("vehicles", "/api/vehicles", {"authorization": f"Bearer {garage.token}"})
    with psycopg.connect(garage.direct_uri, autocommit=True) as raw:

        def floor() -> None:
            for statement, parameters in garage.sql:
                raw.execute(statement, parameters).fetchall()

        ours()
        floor()
        samples = interleaved(ours, lambda: timed_ms(floor), ROUNDS)
    return {
        "figure": f"GET /api/vehicles ({VEHICLES} vehicles x 5 mods), in-process",
        **samples,
        "unit": "ms",
        "budget": 2.0,
        "floor_name": "the same SQL on one raw psycopg connection",
        "note": f"{garage.round_trips} round trips (BEGIN, COMMIT and pings included); "
        "no session: statements compiled once, run with psycopg on a pooled connection "
        "(README, Budgets)",
        "statements": garage.statements,
    }
