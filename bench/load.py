"""`make load`: a bounded, headless locust run against `make dev`, printed, never asserted.

It starts the stand-in provider (bench/fake_provider.py) and `make dev` on ports of their
own (LOAD_PORT, default 7160, and the next one), on a database of its own (created on
DB_URI's server, else the embedded PostgreSQL, and dropped), seeds LOAD_ACCOUNTS accounts, runs
bench/locustfile.py with LOAD_USERS users for LOAD_SECONDS seconds, and prints the status
counts, p50/p99 per route, the server's peak memory and the peak number of database
connections the API held. It exits non-zero when any response was a 5xx.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PORT = int(os.environ.get("LOAD_PORT", "7160"))
USERS = int(os.environ.get("LOAD_USERS", "20"))
SECONDS = int(os.environ.get("LOAD_SECONDS", "60"))
ACCOUNTS = int(os.environ.get("LOAD_ACCOUNTS", "40"))
PASSWORD = "load test passphrase, long enough"  # noqa: S105 - seeded test accounts'
CONNECTIONS = (
    "SELECT count(*) FROM pg_stat_activity "
    "WHERE application_name = 'axly-api' AND datname = current_database()"
)


def seed_accounts(uri: str) -> list[str]:
    """ACCOUNTS accounts with PASSWORD, in the freshly migrated database `uri`."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from api import db
    from api.models import User
    from api.utils.hashing import hash_password

    db.schema_status()  # migrates the load database, as `make dev` would
    emails = [f"load-{n:03d}@example.com" for n in range(ACCOUNTS)]
    engine = create_engine(db.database_url(uri))
    with Session(engine) as session:
        password_hash = hash_password(PASSWORD)
        session.add_all(User(email=email, password_hash=password_hash) for email in emails)
        session.commit()
    engine.dispose()
    return emails


def wait_until_up(url: str, seconds: float = 120) -> None:
    ends = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - localhost
                if response.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > ends:
            raise SystemExit(f"{url} did not answer 200 within {seconds:.0f} s")
        time.sleep(0.5)


def devhost_pid(make_pid: int) -> int:
    """The `python -m devhost` process that `make dev` started."""
    children = Path(f"/proc/{make_pid}/task/{make_pid}/children").read_text().split()
    return int(children[0]) if children else make_pid


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


class ConnectionWatch(threading.Thread):
    """Samples how many connections the API holds, every 0.2 s, keeping the peak."""

    def __init__(self, uri: str) -> None:
        super().__init__(daemon=True)
        self.uri, self.peak, self.done = uri, 0, threading.Event()

    def run(self) -> None:
        from sqlalchemy import create_engine, text

        from api import db

        engine = create_engine(db.database_url(self.uri))
        with engine.connect() as connection:
            while not self.done.is_set():
                self.peak = max(self.peak, connection.execute(text(CONNECTIONS)).scalar_one())
                connection.rollback()
                time.sleep(0.2)
        engine.dispose()


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def report(stats_csv: Path, statuses: dict[str, int]) -> None:
    print(f"status counts: {statuses}")
    print(f"{'route':<26}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}")
    with stats_csv.open(encoding="utf-8") as rows:
        for row in csv.DictReader(rows):
            name = "all routes" if row["Name"] == "Aggregated" else row["Name"]
            print(f"{name:<26}{row['Request Count']:>9}{row['50%']:>9}{row['99%']:>9}")


def main() -> None:
    from bench.turns import fresh_database
    from devhost.settings import load_local_settings

    load_local_settings(ROOT / "local.settings.json")
    with fresh_database("axly_load") as uri:
        run(uri)


def run(uri: str) -> None:
    os.environ["DB_URI"] = uri
    emails = seed_accounts(uri)
    provider_port = PORT + 1
    env = {
        **os.environ,
        "DB_URI": uri,
        "DEVHOST_PORT": str(PORT),
        "OPENAI_API_KEY": "sk-load-test",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{provider_port}/v1",
        "DIAGNOSES_PER_DAY": "1000000",
    }
    workdir = Path(tempfile.mkdtemp(prefix="axly-load-"))
    provider = subprocess.Popen(
        [sys.executable, "-m", "bench.fake_provider", "--port", str(provider_port)],
        cwd=ROOT,
        start_new_session=True,
    )
    server = subprocess.Popen(
        ["make", "--no-print-directory", "dev"],  # noqa: S607 - the developer's own make
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=(workdir / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    watch = ConnectionWatch(uri)
    try:
        wait_until_up(f"http://127.0.0.1:{PORT}/api/health")
        watch.start()
        locust_env = {
            **env,
            "LOAD_ACCOUNTS": json.dumps(emails),
            "LOAD_PASSWORD": PASSWORD,
            "LOAD_STATUS_FILE": str(workdir / "statuses.json"),
        }
        print(f"locust: {USERS} users for {SECONDS} s against http://127.0.0.1:{PORT}")
        subprocess.run(
            [
                sys.executable, "-m", "locust", "-f", str(ROOT / "bench" / "locustfile.py"),
                "--headless", "--only-summary", "--users", str(USERS),
                "--spawn-rate", str(USERS), "--run-time", f"{SECONDS}s",
                "--host", f"http://127.0.0.1:{PORT}", "--csv", str(workdir / "run"),
                "--exit-code-on-error", "0",
            ],
            cwd=ROOT,
            env=locust_env,
            check=True,
            stdout=(workdir / "locust.log").open("wb"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        memory = peak_rss_mb(devhost_pid(server.pid))
    finally:
        watch.done.set()
        stop(server)
        stop(provider)
    statuses = json.loads((workdir / "statuses.json").read_text())
    report(workdir / "run_stats.csv", statuses)
    print(f"peak server memory (RSS): {memory:.0f} MB")
    print(f"peak database connections held by the API: {watch.peak}")
    print(f"logs: {workdir}")
    server_errors = sum(n for code, n in statuses.items() if code.startswith("5"))
    if server_errors or "0" in statuses:
        raise SystemExit(f"{server_errors} 5xx responses, {statuses.get('0', 0)} failed requests")


if __name__ == "__main__":
    main()
