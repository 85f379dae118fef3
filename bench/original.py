"""Budget rows side by side with the original implementation (kylejoeckel/axly-function-app,
read only, never copied here): its GET /api/vehicles over the same garage (20 vehicles of 5
mods) through the same in-process adapter, and its cold start, each interleaved with ours.

`make bench-original` checks it out at ORIGINAL_COMMIT into .bench/original with a venv of
its own requirements (.bench/original-venv). The shim, the least that lets it run here:
- its schema is created from its own models (`Base.metadata.create_all`) in a database of
  its own, `axly_bench_original`, instead of replaying its Alembic history: only the tables
  the listing reads (users, vehicles, mods_library, vehicle_mods, vehicle_images), since
  the whole metadata cannot be created (stripe_subscriptions.user_id is an integer
  referring to the UUID users.id);
- AZURE_BLOB_CONN_STRING is Azurite's well-known development string pointing at a stand-in
  that answers every request at once with 201 Created: the original creates its blob
  container while being imported (one request), and this listing never calls storage (the
  garage has no images). An instant answer only makes the original look faster;
- DATABASE_URL and JWT_SECRET_KEY are its own settings.
Without the checkout the rows are left out, saying so.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.budgets import Row, interleaved

ORIGINAL_COMMIT = "b8d79103e2633a3ae1115b15acbaf0eec9f1a634"
ORIGINAL_DIR = Path(os.environ.get("ORIGINAL_DIR", ".bench/original"))
ORIGINAL_PYTHON = Path(os.environ.get("ORIGINAL_PYTHON", ".bench/original-venv/bin/python"))
ROUNDS = 200
IMPORT_ROUNDS = 7
# Azurite's published development account (the same for everyone; not a secret).
AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
    "KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
)


class _Created(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        self.send_response(201)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def _environment() -> Iterator[dict[str, str]]:
    """The original's settings, with its blob storage stand-in running."""
    from sqlalchemy import make_url

    from bench.garage import use_bench_database
    from devhost.database import Server, ensure_database

    server = Server.from_uri(use_bench_database())
    url = make_url(ensure_database(server, "axly_bench_original"))
    storage = ThreadingHTTPServer(("127.0.0.1", 0), _Created)
    serving = threading.Thread(target=storage.serve_forever, daemon=True)
    serving.start()
    try:
        yield {
            "DATABASE_URL": url.set(drivername="postgresql+psycopg2").render_as_string(False),
            "JWT_SECRET_KEY": "bench-only-secret-" + "y" * 32,
            "AZURE_BLOB_CONN_STRING": AZURITE.format(port=storage.server_address[1]),
        }
    finally:
        storage.shutdown()
        storage.server_close()


# Run by the original's interpreter in its directory: create its schema and the garage,
# then time one call of its indexed "Vehicles" function per line read, printing the ms.
_DRIVER = """
import json, sys, time, uuid
import azure.functions as func
import function_app
from db import engine, SessionLocal
from models import Base, ModsLibrary, User, Vehicle, VehicleImage, VehicleMod
from auth.token import create_access_token

assert not function_app.FAILURES, function_app.FAILURES
tables = [model.__table__ for model in (User, Vehicle, ModsLibrary, VehicleMod, VehicleImage)]
Base.metadata.create_all(engine, tables=tables)
with SessionLocal() as session:
    user = User(email=f"bench-{uuid.uuid4().hex[:8]}@example.com", password_hash="!")
    session.add(user)
    session.flush()
    for n in range(20):
        vehicle = Vehicle(user_id=user.id, make="Mazda", model="3", year=str(2000 + n % 25))
        session.add(vehicle)
        session.flush()
        session.add_all(VehicleMod(vehicle_id=vehicle.id, name=f"Mod {m}") for m in range(5))
    session.commit()
    headers = {"authorization": "Bearer " + create_access_token({"sub": str(user.id)})}
vehicles = next(
    f.get_user_function() for f in function_app.app.get_functions()
    if f.get_function_name() == "Vehicles"
)
print("ready", flush=True)
for _ in sys.stdin:
    request = func.HttpRequest("GET", "http://bench/api/vehicles", headers=headers, body=b"")
    started = time.perf_counter()
    response = vehicles(req=request)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200 and len(json.loads(response.get_body())) == 20
    print(elapsed, flush=True)
"""

_IMPORT = """
import function_app
function_app.app.get_functions()
assert not function_app.FAILURES, function_app.FAILURES
"""


def available() -> bool:
    if ORIGINAL_PYTHON.exists() and (ORIGINAL_DIR / "function_app.py").exists():
        return True
    print("  the original implementation is not checked out: run `make bench-original`")
    return False


def vehicles() -> Row | None:
    from bench.reads import VEHICLES, bench_garage, in_process

    if not available():
        return None
    garage = bench_garage()
    ours = in_process("vehicles", "/api/vehicles", {"authorization": f"Bearer {garage.token}"})
    with (
        _environment() as env,
        subprocess.Popen(
            [str(ORIGINAL_PYTHON.absolute()), "-c", _DRIVER],
            cwd=ORIGINAL_DIR,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,  # its logging; a failure shows as no "ready" line
            text=True,
        ) as original,
    ):
        assert original.stdin is not None
        assert original.stdout is not None
        stdin, stdout = original.stdin, original.stdout
        assert stdout.readline().strip() == "ready"

        def theirs() -> float:
            stdin.write("\n")
            stdin.flush()
            return float(stdout.readline())

        theirs()
        samples = interleaved(ours, theirs, ROUNDS)
        stdin.close()
    return {
        "figure": f"GET /api/vehicles ({VEHICLES} vehicles x 5 mods) vs the original's",
        **samples,
        "unit": "ms",
        "budget": 0.1,
        "floor_name": "kylejoeckel/axly-function-app, same data and adapter",
        "note": "the original runs a query per vehicle (its image) and a session each; "
        "ours as in the row above",
        "statements": None,
    }


def cold_start() -> Row | None:
    from bench.coldstart import _IMPORT_APP, byte_compile, run_timed

    if not available():
        return None
    byte_compile()
    byte_compile(ORIGINAL_DIR)  # both sides as deployed alike: from bytecode
    original = str(ORIGINAL_PYTHON.absolute())
    with _environment() as env:
        samples = interleaved(
            lambda: run_timed(_IMPORT_APP),
            lambda: run_timed(_IMPORT, python=original, cwd=ORIGINAL_DIR, env=env),
            IMPORT_ROUNDS,
        )
    return {
        "figure": "cold start: import + index vs the original's",
        **samples,
        "unit": "ms",
        "budget": 0.4,
        "floor_name": "the original's `import function_app` + `get_functions()`",
        "note": "fresh interpreter per sample",
        "statements": None,
    }
