"""`make bench`: first the budget table (bench/budgets.py: each figure next to its floor,
measured interleaved), then figures for cold start, request latency, diagnosis turns at
scale and abuse (printed, never asserted). `python -m bench [budgets|cold|requests|turns|
abuse] [--app-dir DIR]` runs one; `python -m bench check` (`make bench-check`) prints the
budget table and exits 1 naming each row past 1.5 times its budget; `media` and `logins`
measure just those budget rows.

Cold start: a fresh interpreter importing function_app and indexing it, as the Azure
worker does, and which heavy modules that pulled in (telemetry's included: without a
connection string none may load); then what starting telemetry adds, with one. Requests:
median and p95 latency of routes served in-process by the local host against a real
PostgreSQL (the server of DB_URI, else the embedded one) in a database of the benchmark's
own, `axly_bench`, and the SQL statements a garage listing takes for 1 and for 50 vehicles
with mods. Turns: bench/turns.py (`--app-dir`: another checkout's code, e.g. the design
before).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

HEAVY_MODULES = ("alembic", "openai", "sendgrid", "obd", "opentelemetry", "azure.monitor")
COLD_START_RUNS = 5
REQUESTS_PER_ROUTE = 200

_COLD_START = """
import json, sys, time
started = time.perf_counter()
import function_app
function_app.app.get_functions()
elapsed = time.perf_counter() - started
print(json.dumps({"ms": elapsed * 1000, "loaded": [m for m in %r if m in sys.modules]}))
"""


def run(script: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What `script` prints as JSON, run in a fresh interpreter."""
    printed: dict[str, Any] = json.loads(
        subprocess.check_output([sys.executable, "-c", script], env=env)
    )
    return printed


def cold_start() -> None:
    runs = [run(_COLD_START % (HEAVY_MODULES,)) for _ in range(COLD_START_RUNS)]
    timings = sorted(run["ms"] for run in runs)
    print(
        f"cold start (import + index): median {statistics.median(timings):.0f} ms, "
        f"min {timings[0]:.0f} ms over {COLD_START_RUNS} runs"
    )
    print(f"heavy modules loaded at start-up: {runs[0]['loaded'] or 'none'}")


# What turning telemetry on costs, once, at the first invocation (no export happens here).
_TELEMETRY_START = """
import json, os, time
import function_app
from api import telemetry
started = time.perf_counter()
assert telemetry.start() is not None
print(json.dumps({"ms": (time.perf_counter() - started) * 1000}))
os._exit(0)  # no exit-time flush: nothing listens at the ingestion endpoint
"""


def telemetry_start() -> None:
    with tempfile.TemporaryDirectory() as storage:  # the exporter's retry storage
        env = {
            **os.environ,
            "APPLICATIONINSIGHTS_CONNECTION_STRING": (
                "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                "IngestionEndpoint=http://127.0.0.1:9/"
            ),
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "APPLICATIONINSIGHTS_SDKSTATS_DISABLED": "true",
            "APPLICATIONINSIGHTS_CONTROLPLANE_DISABLED": "true",
            "TMPDIR": storage,
        }
        timings = sorted(run(_TELEMETRY_START, env)["ms"] for _ in range(COLD_START_RUNS))
    print(
        f"telemetry start-up at the first request (connection string set): median "
        f"{statistics.median(timings):.0f} ms, min {timings[0]:.0f} ms"
    )


def timed(label: str, call: Callable[[], object], runs: int = REQUESTS_PER_ROUTE) -> None:
    call()  # warm up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    p95 = samples[int(len(samples) * 0.95)]
    print(
        f"{label}: median {statistics.median(samples):.2f} ms, p95 {p95:.2f} ms "
        f"over {runs} requests"
    )


def get_ok(client: httpx.Client, path: str, headers: dict[str, str] | None = None) -> None:
    client.get(path, headers=headers).raise_for_status()


def request_latency() -> None:
    import httpx
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from api import db
    from api.services.auth import start_session
    from bench.garage import garage_owner, use_bench_database
    from devhost.host import create_app
    from function_app import app

    use_bench_database()
    db.schema_status()
    engine = db.get_engine()
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: statements.append(args[2]))

    transport = httpx.WSGITransport(app=create_app(app))
    with httpx.Client(transport=transport, base_url="http://bench/api") as client:
        for path in ("/health", "/openapi.json"):
            timed(f"GET /api{path}", partial(get_ok, client, path))
        with Session(engine, expire_on_commit=False) as session:
            tokens = {
                count: start_session(session=session, user=garage_owner(session, count))
                for count in (1, 50)
            }
            session.commit()
        for count, bundle in tokens.items():
            headers = {"Authorization": f"Bearer {bundle.access_token}"}
            statements.clear()
            client.get("/vehicles", headers=headers).raise_for_status()
            print(f"GET /api/vehicles with {count} vehicles: {len(statements)} SQL statements")
            timed(
                f"GET /api/vehicles with {count} vehicles",
                partial(get_ok, client, "/vehicles", headers),
            )


def abuse() -> None:
    """bench/abuse.py's figures: rejected bodies' memory, GET latency during logins."""
    import uuid

    import httpx
    from sqlalchemy.orm import Session

    from api import db
    from api.models import User
    from api.services.auth import start_session
    from api.settings import get_settings
    from api.utils.hashing import hash_password
    from bench import abuse as figures
    from bench.garage import garage_owner, use_bench_database
    from devhost.host import create_app
    from devhost.server import serving
    from function_app import app

    use_bench_database()
    os.environ["BCRYPT_ROUNDS"] = "12"  # logins at the production cost
    get_settings.cache_clear()
    db.dispose_engine()
    db.schema_status()
    password = "bench passphrase that is long enough"  # noqa: S105 - bench accounts'
    with Session(db.get_engine(), expire_on_commit=False) as session:
        owner = garage_owner(session, 5)
        headers = {
            "Authorization": f"Bearer {start_session(session=session, user=owner).access_token}"
        }
        # One account per login client: logins to one account queue on its own lock.
        password_hash = hash_password(password)
        accounts = [f"bench-login-{uuid.uuid4().hex[:8]}@example.com" for _ in range(20)]
        session.add_all(User(email=email, password_hash=password_hash) for email in accounts)
        session.commit()

    host = create_app(app)
    with httpx.Client(
        transport=httpx.WSGITransport(app=host), base_url="http://bench/api"
    ) as client:
        figures.rejected_bodies(client, headers)

    threads = figures.worker_threads()
    with serving(host, host="127.0.0.1", port=0, threads=threads) as server:
        base_url = f"http://127.0.0.1:{server.effective_port}/api"
        print(
            f"GET /api/vehicles during logins (BCRYPT_ROUNDS {get_settings().bcrypt_rounds}, "
            f"{os.cpu_count()} cores, {threads} worker threads):"
        )
        for limit, label in (("64", "bcrypt unlimited"), ("0", "BCRYPT_MAX_CONCURRENCY default")):
            os.environ["BCRYPT_MAX_CONCURRENCY"] = limit
            get_settings.cache_clear()
            print(f"  {label} ({get_settings().bcrypt_slots} at once):")
            figures.vehicles_during_logins(base_url, headers, accounts, password)


def main(argv: list[str] | None = None) -> None:
    import argparse
    from pathlib import Path

    from bench import budgets

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "part",
        nargs="?",
        choices=["budgets", "check", "cold", "requests", "turns", "abuse", "media", "logins"],
    )
    parser.add_argument("--app-dir", type=Path, default=Path.cwd(), help="checkout to serve")
    args = parser.parse_args(argv)
    os.environ.setdefault("JWT_SECRET", "bench-only-secret-" + "x" * 32)
    os.environ.setdefault("AXLY_ENV", "development")
    os.environ.setdefault("BCRYPT_ROUNDS", "10")
    if args.part == "check":
        sys.exit(budgets.check())
    if args.part in (None, "budgets"):
        budgets.report()
    if args.part in (None, "cold"):
        cold_start()
        telemetry_start()
    if args.part in (None, "requests"):
        request_latency()
    if args.part in (None, "turns"):
        from bench import turns

        turns.run(args.app_dir.resolve())
    if args.part in (None, "abuse"):
        abuse()
    if args.part == "media":  # two of the budget rows alone
        from bench import media

        budgets.report([media.diagnose_overhead(), *media.diagnose_memory()])
    if args.part == "logins":
        from bench import logins

        budgets.report([logins.vehicles_during_logins()])


if __name__ == "__main__":
    main()
