"""Budget row for issue 11 (`python -m bench logins`): GET /api/vehicles (20 vehicles of 5
mods) p99 while LOGIN_CLIENTS clients log in without pause (bcrypt at the production cost,
BCRYPT_ROUNDS=12), against its floor: the same probe with nobody logging in. One API
process as the Azure worker runs one (its default thread pool, BCRYPT_MAX_CONCURRENCY at its
default); phases alternate, idle then busy, ROUNDS times, each giving one p99.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

LOGIN_CLIENTS = 4
ROUNDS = 6
PHASE_S = 4.0
VEHICLES = 20
PASSWORD = "bench passphrase that is long enough"  # noqa: S105 - the bench accounts'


def accounts() -> tuple[dict[str, str], list[str]]:
    """A garage owner's Bearer header, and LOGIN_CLIENTS accounts that log in with PASSWORD
    (one each: logins to one account wait for each other's throttle lock)."""
    from sqlalchemy.orm import Session

    from api import db
    from api.models import User
    from api.services.auth import start_session
    from api.settings import get_settings
    from api.utils.hashing import hash_password
    from bench.garage import garage_owner, use_bench_database

    os.environ["BCRYPT_ROUNDS"] = "12"  # logins at the production cost
    use_bench_database()
    get_settings.cache_clear()
    db.dispose_engine()
    db.schema_status()
    password_hash = hash_password(PASSWORD)
    emails = [f"bench-login-{uuid.uuid4().hex[:8]}@example.com" for _ in range(LOGIN_CLIENTS)]
    with Session(db.get_engine(), expire_on_commit=False) as session:
        owner = garage_owner(session, VEHICLES)
        token = start_session(session=session, user=owner).access_token
        session.add_all(User(email=email, password_hash=password_hash) for email in emails)
        session.commit()
    return {"Authorization": f"Bearer {token}"}, emails


@contextmanager
def logging_in(base: str, emails: list[str], served: list[float]) -> Iterator[None]:
    """A client per account logging in over and over (waiting Retry-After on a 429, as the
    app does); `served` gets each successful login's milliseconds."""
    import httpx

    stop = threading.Event()

    def log_in_repeatedly(email: str) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop.is_set():
                started = time.perf_counter()
                answer = client.post("/login", json={"email": email, "password": PASSWORD})
                if answer.status_code == 200:
                    served.append((time.perf_counter() - started) * 1000)
                elif answer.status_code == 429:
                    stop.wait(int(answer.headers["Retry-After"]))
                else:
                    answer.raise_for_status()

    clients = [threading.Thread(target=log_in_repeatedly, args=(email,)) for email in emails]
    for client in clients:
        client.start()
    time.sleep(0.5)  # every client inside its first login
    try:
        yield
    finally:
        stop.set()
        for client in clients:
            client.join()


def vehicles_during_logins() -> dict[str, Any]:
    from bench.abuse import percentile, probe_vehicles
    from bench.media import api_process

    headers, emails = accounts()
    ours: list[float] = []
    floor: list[float] = []
    logins: list[float] = []
    with api_process({"BCRYPT_ROUNDS": "12"}) as (base, _):
        probe_vehicles(base, headers, PHASE_S)  # warm up
        for _ in range(ROUNDS):
            floor.append(percentile(probe_vehicles(base, headers, PHASE_S), 0.99))
            with logging_in(base, emails, logins):
                ours.append(percentile(probe_vehicles(base, headers, PHASE_S), 0.99))
    busy_s = ROUNDS * (PHASE_S + 0.5)
    return {
        "figure": f"GET /api/vehicles p99 while {LOGIN_CLIENTS} clients log in (bcrypt 12)",
        "ours": ours,
        "floor": floor,
        "unit": "ms",
        "budget": 1.5,
        "floor_name": "the same probe with nobody logging in",
        "note": f"{os.cpu_count()} cores; one p99 per {PHASE_S:.0f} s phase; logins served "
        f"{len(logins) / busy_s:.1f}/s, median {statistics.median(logins or [0]):.0f} ms",
        "statements": None,
        "guarded": False,  # not reached on 2 cores (README, Budgets)
    }
