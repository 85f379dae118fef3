"""Budget rows for a cold start, each a fresh interpreter per sample (as a new Functions
worker): importing and indexing the app against importing the libraries it cannot do
without; and the first requests of a fresh process (GET /api/health, then an authenticated
GET /api/vehicles) against those imports plus one raw psycopg connection running the same
SQL — so that deferring work to the first request shows up here instead of disappearing.

Our modules are byte-compiled first, as the deployment package ships them (deploy/build.py)
and as the libraries on both sides are (pip compiles what it installs): a cold worker on
Azure loads bytecode, and without this each sample would compile ~200 KB of our sources
(about a tenth of the first requests) wherever PYTHONDONTWRITEBYTECODE is set, and on
other machines only on the first run."""

from __future__ import annotations

import compileall
import json
import os
import py_compile
import subprocess
import sys
from pathlib import Path

from bench.budgets import Row, interleaved

ROUNDS = 15
FLOOR_MODULES = ("azure.functions", "sqlalchemy.orm", "psycopg", "pydantic")
FLOOR_NAME = "import " + ", ".join(FLOOR_MODULES)

_TIMED = """
import json, time
started = time.perf_counter()
{body}
print(json.dumps({{"ms": (time.perf_counter() - started) * 1000}}))
"""

_IMPORT_APP = "import function_app\nfunction_app.app.get_functions()"
_IMPORT_FLOOR = "\n".join(f"import {module}" for module in FLOOR_MODULES)

# The app's first two requests as the worker makes them: the indexed function called with a
# func.HttpRequest and the invocation context.
_FIRST_REQUESTS = """
import os
import azure.functions as func
import function_app
from devhost.invocation import invocation_context
functions = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
for name, path, headers in (
    ("health", "/api/health", {}),
    ("vehicles", "/api/vehicles", {"authorization": "Bearer " + os.environ["BENCH_TOKEN"]}),
):
    request = func.HttpRequest("GET", "http://bench" + path, headers=headers, body=b"")
    status = functions[name](req=request, context=invocation_context(name, headers)).status_code
    assert status == 200, (path, status)
"""

_FIRST_REQUESTS_FLOOR = (
    _IMPORT_FLOOR
    + """
import os
connection = psycopg.connect(os.environ["BENCH_DIRECT_URI"], autocommit=True)
for sql, params in json.loads(os.environ["BENCH_SQL"]):
    connection.execute(sql, params).fetchall()
"""
)


def byte_compile(root: Path | None = None) -> None:
    """Compile the app's modules under `root` (this checkout) into their `__pycache__`, as
    deploy/build.py ships them: our own files, or every module of another checkout (the
    original's). Time-stamp checked, unlike the package's: a checkout's sources change."""
    if root is not None:
        compileall.compile_dir(root, quiet=1)
        return
    from deploy.build import app_files

    here = Path.cwd()
    for path in app_files(here):
        if path.suffix == ".py":
            py_compile.compile(str(here / path), doraise=True)


def run_timed(
    body: str,
    *,
    python: str = sys.executable,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> float:
    """How long `body` took, in milliseconds, in a fresh interpreter (its start-up aside)."""
    script = _TIMED.format(body=body)
    run = subprocess.run(
        [python, "-c", script],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,  # the original logs freely: shown only when a run fails
        text=True,
        check=False,
    )
    if run.returncode != 0:
        raise RuntimeError(f"{python} failed to run {body!r}:\n{run.stderr}")
    return float(json.loads(run.stdout)["ms"])


def cold_start() -> Row:
    byte_compile()
    samples = interleaved(lambda: run_timed(_IMPORT_APP), lambda: run_timed(_IMPORT_FLOOR), ROUNDS)
    return {
        "figure": "cold start: `import function_app` + `get_functions()`",
        **samples,
        "unit": "ms",
        "budget": 1.15,
        "floor_name": FLOOR_NAME,
        "note": f"fresh interpreter per sample, {ROUNDS} rounds; our modules byte-compiled as "
        "deployed",
        "statements": None,
    }


def first_request() -> Row:
    from bench.reads import bench_garage

    garage = bench_garage()
    byte_compile()
    env = {
        "BENCH_TOKEN": garage.token,
        "BENCH_DIRECT_URI": garage.direct_uri,
        "BENCH_SQL": json.dumps(garage.sql, default=str),
    }
    samples = interleaved(
        lambda: run_timed(_FIRST_REQUESTS, env=env),
        lambda: run_timed(_FIRST_REQUESTS_FLOOR, env=env),
        ROUNDS,
    )
    return {
        "figure": "first requests of a fresh process: import + index + GET /api/health + "
        "first authenticated GET /api/vehicles",
        **samples,
        "unit": "ms",
        "budget": 1.5,
        "floor_name": f"{FLOOR_NAME} + psycopg connect + the same SQL",
        "note": "includes the engine's first connection and the schema check",
        "statements": None,
    }
