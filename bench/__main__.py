"""`make bench`: figures for cold start and request latency (printed, never asserted).

Cold start: a fresh interpreter importing function_app and indexing it, as the Azure
worker does, and which heavy modules that pulled in. Requests: median and p95 latency of
a few routes served in-process by the local host against a real PostgreSQL (DB_URI, else
the embedded server), with the database already at head.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

HEAVY_MODULES = ("alembic", "openai", "sendgrid", "obd")
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


def cold_start() -> None:
    env = os.environ | {"JWT_SECRET": os.environ.get("JWT_SECRET", "b" * 40)}
    runs = [
        json.loads(
            subprocess.check_output([sys.executable, "-c", _COLD_START % (HEAVY_MODULES,)], env=env)
        )
        for _ in range(COLD_START_RUNS)
    ]
    timings = sorted(run["ms"] for run in runs)
    print(
        f"cold start (import + index): median {statistics.median(timings):.0f} ms, "
        f"min {timings[0]:.0f} ms over {COLD_START_RUNS} runs"
    )
    print(f"heavy modules loaded at start-up: {runs[0]['loaded'] or 'none'}")


def request_latency() -> None:
    import httpx

    from devhost.__main__ import prepare_database
    from devhost.host import create_app

    os.environ.setdefault("JWT_SECRET", "b" * 40)
    prepare_database()
    from function_app import app

    transport = httpx.WSGITransport(app=create_app(app))
    with httpx.Client(transport=transport, base_url="http://bench/api") as client:
        for path in ("/health", "/openapi.json"):
            client.get(path)  # warm up
            samples = []
            for _ in range(REQUESTS_PER_ROUTE):
                started = time.perf_counter()
                client.get(path).raise_for_status()
                samples.append((time.perf_counter() - started) * 1000)
            samples.sort()
            p95 = samples[int(len(samples) * 0.95)]
            print(
                f"GET /api{path}: median {statistics.median(samples):.2f} ms, "
                f"p95 {p95:.2f} ms over {REQUESTS_PER_ROUTE} requests"
            )


if __name__ == "__main__":
    cold_start()
    request_latency()
