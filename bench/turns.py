"""Diagnosis turns at scale: 2 API processes (pools of DB_POOL_SIZE=5, no overflow) against
one PostgreSQL, an AI provider that takes PROVIDER_S for every call, USERS users diagnosing
without pause for DURATION_S, and GET /api/health probed throughout.

Printed (never asserted): responses by status, turn latency, the peak number of database
connections the app held (by application_name; the migration connection apart), the most
`idle in transaction` connections seen while a provider call was in flight, and health
latency. `--app-dir` runs the same scenario against another checkout (e.g. a git worktree
of the design before), served by that checkout's code with this one's venv.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg import sql

PROCESSES = 2
POOL_SIZE = 5
THREADS = 32  # PYTHON_THREADPOOL_THREAD_COUNT of each process
USERS = 30
DURATION_S = 60.0
PROVIDER_S = 3.0
SAMPLE_EVERY_S = 0.1
HEALTH_EVERY_S = 0.1
STUCK_S = 1.0
PASSWORD = "Bench password 1234"  # noqa: S105 - the bench accounts' throwaway password

DIAGNOSIS = {
    "summary": "A worn drive belt is the likely cause.",
    "severity": "low",
    "safe_to_drive": "yes",
    "likely_causes": [
        {"cause": "Worn belt", "likelihood": "high", "how_to_check": "Look for cracks"}
    ],
    "next_steps": ["Replace the belt"],
    "follow_up_questions": [],
    "dtc": [],
}

# One API process, as devhost serves it, with the worker's thread count given explicitly.
SERVER = """
import sys
from devhost.__main__ import build, prepare_database
from devhost.server import create_server
port, threads = int(sys.argv[1]), int(sys.argv[2])
server = build(["--port", str(port)])
prepare_database()
create_server(server.app, host="127.0.0.1", port=port, threads=threads).run()
"""


class Provider(ThreadingHTTPServer):
    """An OpenAI-compatible server that answers every chat call after PROVIDER_S."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ProviderHandler)
        self.in_flight = 0
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _ProviderHandler(BaseHTTPRequestHandler):
    server: Provider

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.in_flight += 1
        try:
            time.sleep(PROVIDER_S)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1
        content = json.dumps(DIAGNOSIS) if "response_format" in body else "Belt noise"
        reply = json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 1_700_000_000,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per call would drown the figures."""


@dataclass
class Observed:
    """What the scenario saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    turn_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    health_statuses: Counter[int] = field(default_factory=Counter)
    peak_app_connections: int = 0
    peak_migration_connections: int = 0
    # Connections idle inside a transaction for STUCK_S or more while a provider call was in
    # flight (waiting on the provider, not between two statements), and the longest idle.
    peak_stuck_in_transaction: int = 0
    longest_idle_in_transaction_s: float = 0.0
    samples: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def fresh_database(prefix: str = "axly_bench_turns") -> Iterator[str]:
    """An empty database of this run's own on the server of DB_URI (else the embedded one),
    dropped afterwards."""
    from devhost.database import Server, embedded_server

    uri = os.environ.get("DB_URI")
    server = Server.from_uri(uri) if uri else embedded_server()
    admin = server.uri(server.maintenance_db).replace("+psycopg", "")
    database = f"{prefix}_{os.getpid()}"
    name = sql.Identifier(database)
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        yield server.uri(database)
    finally:
        with psycopg.connect(admin, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@contextmanager
def _servers(app_dir: Path, env: dict[str, str]) -> Iterator[list[str]]:
    """PROCESSES API processes of `app_dir`'s code; their base URLs once all are healthy."""
    ports = [_free_port() for _ in range(PROCESSES)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), str(THREADS)],
            cwd=app_dir,
            env={**env, "PYTHONPATH": str(app_dir)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}/api" for port in ports]
    try:
        deadline = time.monotonic() + 120
        for base in bases:
            while not _healthy(base):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{base} did not become healthy")
                time.sleep(0.5)
        yield bases
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _create_users(database_uri: str) -> list[str]:
    """USERS accounts that can log in with PASSWORD; their e-mails."""
    from api.utils.hashing import hash_password

    password_hash = hash_password(PASSWORD)
    emails = [f"bench-{uuid.uuid4().hex[:10]}@example.com" for _ in range(USERS)]
    with psycopg.connect(database_uri.replace("+psycopg", "")) as connection:
        for email in emails:
            connection.execute(
                "INSERT INTO users (email, password_hash) VALUES (%s, %s)", (email, password_hash)
            )
    return emails


def _log_in(base: str, email: str) -> dict[str, str]:
    """The user's Bearer header, from the API's own login (whichever design serves it)."""
    login = httpx.post(f"{base}/login", json={"email": email, "password": PASSWORD}, timeout=60)
    return {"Authorization": f"Bearer {login.raise_for_status().json()['access_token']}"}


def _diagnose_until(stop: float, base: str, headers: dict[str, str], observed: Observed) -> None:
    with httpx.Client(base_url=base, timeout=120) as client:
        session_id: str | None = None
        while time.monotonic() < stop:
            body: dict[str, Any] = {"q": "Squeal from the engine bay when cold"}
            if session_id:
                body["session_id"] = session_id
            started = time.perf_counter()
            response = client.post("/diagnose2", headers=headers, json=body)
            elapsed_ms = (time.perf_counter() - started) * 1000
            with observed.lock:
                observed.statuses[response.status_code] += 1
                if response.status_code == 200:
                    observed.turn_ms.append(elapsed_ms)
            if response.status_code == 200:
                session_id = response.json()["session_id"]


# GET /api/health every HEALTH_EVERY_S in a process of its own, so the users' threads in
# this one do not slow the measuring client down; prints [[status, ms], ...].
PROBE = """
import json, sys, time
import httpx
bases, duration, every = json.loads(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
probes, stop = [], time.monotonic() + duration
with httpx.Client(timeout=60) as client:
    while time.monotonic() < stop:
        started = time.perf_counter()
        status = client.get(bases[len(probes) % len(bases)] + "/health").status_code
        probes.append((status, (time.perf_counter() - started) * 1000))
        time.sleep(every)
print(json.dumps(probes))
"""


def _start_probing(bases: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, json.dumps(bases), str(DURATION_S), str(HEALTH_EVERY_S)],
        stdout=subprocess.PIPE,
        text=True,
    )


def _probed(prober: subprocess.Popen[str], observed: Observed) -> None:
    out, _ = prober.communicate(timeout=DURATION_S + 120)
    for status, ms in json.loads(out):
        observed.health_statuses[status] += 1
        observed.health_ms.append(ms)


def _sample_connections(
    done: threading.Event, database_uri: str, provider: Provider, observed: Observed
) -> None:
    """pg_stat_activity every SAMPLE_EVERY_S: the app's connections, and how long each one
    that is idle inside a transaction has been so."""
    query = (
        "SELECT application_name, state, extract(epoch FROM clock_timestamp() - state_change)"
        " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(database_uri.replace("+psycopg", ""), autocommit=True) as connection:
        while not done.wait(SAMPLE_EVERY_S):
            providing = provider.in_flight > 0
            rows = connection.execute(query).fetchall()
            app = [
                (state, float(idle_s or 0)) for name, state, idle_s in rows if name == "axly-api"
            ]
            migrating = sum(1 for name, *_ in rows if name == "axly-api-migrations")
            idle_in_transaction = [s for state, s in app if state == "idle in transaction"]
            observed.samples += 1
            observed.peak_app_connections = max(observed.peak_app_connections, len(app))
            observed.peak_migration_connections = max(
                observed.peak_migration_connections, migrating
            )
            observed.longest_idle_in_transaction_s = max(
                [observed.longest_idle_in_transaction_s, *idle_in_transaction]
            )
            if providing:
                stuck = sum(1 for idle_s in idle_in_transaction if idle_s >= STUCK_S)
                observed.peak_stuck_in_transaction = max(observed.peak_stuck_in_transaction, stuck)


def _percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else 0.0


def run(app_dir: Path) -> None:
    with fresh_database() as database_uri:
        observed = _observe(app_dir, database_uri)
    _report(app_dir, observed)


def _observe(app_dir: Path, database_uri: str) -> Observed:
    provider = Provider()
    threading.Thread(target=provider.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "DB_URI": database_uri,
        "DB_POOLER": "none",
        "DB_MIGRATION_URI": "",
        "DB_POOL_SIZE": str(POOL_SIZE),
        "DB_MAX_OVERFLOW": "0",
        "DB_MIGRATE_ON_STARTUP": "true",
        "OPENAI_API_KEY": "sk-bench",
        "OPENAI_BASE_URL": provider.url,
        "OPENAI_MAX_RETRIES": "0",
        "OPENAI_TIMEOUT_S": "60",
        "DIAGNOSES_PER_DAY": "1000000",
        "PYTHON_THREADPOOL_THREAD_COUNT": str(THREADS),
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "",
    }
    observed = Observed()
    sampling = threading.Event()
    sampler = threading.Thread(
        target=_sample_connections, args=(sampling, database_uri, provider, observed)
    )
    sampler.start()  # from before the processes start: their migration counts too
    try:
        with _servers(app_dir, env) as bases:
            users = [  # logged in before the clock starts: bcrypt is not what is measured
                (bases[i % len(bases)], _log_in(bases[i % len(bases)], email))
                for i, email in enumerate(_create_users(database_uri))
            ]
            stop = time.monotonic() + DURATION_S
            workers = [
                threading.Thread(target=_diagnose_until, args=(stop, base, headers, observed))
                for base, headers in users
            ]
            prober = _start_probing(bases)
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
            _probed(prober, observed)
    finally:
        sampling.set()
        sampler.join()
        provider.shutdown()
    return observed


def _report(app_dir: Path, observed: Observed) -> None:
    server_errors = sum(n for status, n in observed.statuses.items() if status >= 500)
    print(
        f"diagnosis turns at scale ({app_dir}): {PROCESSES} processes x "
        f"pool {POOL_SIZE}, {USERS} users for {DURATION_S:.0f} s, provider {PROVIDER_S:.0f} s "
        "per call"
    )
    print(f"  responses: {dict(sorted(observed.statuses.items()))}, 5xx: {server_errors}")
    print(
        f"  turn latency: median {statistics.median(observed.turn_ms or [0]):.0f} ms, "
        f"p99 {_percentile(observed.turn_ms, 0.99):.0f} ms over {len(observed.turn_ms)} turns"
    )
    print(
        f"  peak app connections: {observed.peak_app_connections} "
        f"(+ {observed.peak_migration_connections} for migrations) over {observed.samples} "
        f"samples; idle in transaction >= {STUCK_S:.0f} s during a provider call: at most "
        f"{observed.peak_stuck_in_transaction}; longest idle in transaction: "
        f"{observed.longest_idle_in_transaction_s * 1000:.0f} ms"
    )
    print(
        f"  GET /api/health: p50 {_percentile(observed.health_ms, 0.5):.0f} ms, "
        f"p99 {_percentile(observed.health_ms, 0.99):.0f} ms, "
        f"max {max(observed.health_ms or [0]):.0f} ms over {len(observed.health_ms)} probes, "
        f"statuses {dict(observed.health_statuses)}"
    )
