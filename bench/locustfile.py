"""The mixed workload of `make load` (run by bench/load.py through locust's own command line):
app users that log in, read and edit their garage, list conversations, diagnose (against the
stand-in provider), refresh their tokens and log in again now and then. Every response's
status is tallied into LOAD_STATUS_FILE when the run ends."""

from __future__ import annotations

import base64
import json
import os
import random
import time
from collections import Counter
from typing import Any

from locust import HttpUser, between, events, task

ACCOUNTS: list[str] = json.loads(os.environ.get("LOAD_ACCOUNTS", "[]"))
PASSWORD = os.environ.get("LOAD_PASSWORD", "")
STATUS_FILE = os.environ.get("LOAD_STATUS_FILE", "")
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(40))).decode()

statuses: Counter[int] = Counter()


def _tally(response: Any = None, **_: Any) -> None:
    """Every response's status; 0 for a request that got none (a connection error)."""
    statuses[response.status_code if response is not None else 0] += 1


def _write_statuses(**_: Any) -> None:
    if STATUS_FILE:
        with open(STATUS_FILE, "w", encoding="utf-8") as out:
            json.dump({str(code): n for code, n in sorted(statuses.items())}, out)


events.request.add_listener(_tally)
events.quitting.add_listener(_write_statuses)


class AppUser(HttpUser):
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.email = random.choice(ACCOUNTS)
        while not self.log_in():  # as the app does: wait what Retry-After says, try again
            time.sleep(2)

    def log_in(self) -> bool:
        body = {"email": self.email, "password": PASSWORD}
        r = self.client.post("/api/login", json=body, name="POST /login")
        if r.status_code == 200:
            self.tokens = r.json()
        return r.status_code == 200

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}

    @task(6)
    def list_vehicles(self) -> None:
        self.client.get("/api/vehicles", headers=self.auth, name="GET /vehicles")

    @task(2)
    def add_and_remove_a_vehicle(self) -> None:
        body = {"make": "Mazda", "model": "MX-5", "year": 1990, "nickname": "Load"}
        r = self.client.post("/api/vehicles", json=body, headers=self.auth, name="POST /vehicles")
        if r.status_code == 201:
            self.client.delete(
                f"/api/vehicles/{r.json()['id']}", headers=self.auth, name="DELETE /vehicles/{id}"
            )

    @task(3)
    def list_conversations(self) -> None:
        self.client.get("/api/conversations", headers=self.auth, name="GET /conversations")

    @task(2)
    def diagnose(self) -> None:
        body: dict[str, Any] = {"q": "It knocks when cold, code P0301"}
        if random.random() < 0.3:
            body["images"] = [PNG]
        self.client.post("/api/diagnose2", json=body, headers=self.auth, name="POST /diagnose2")

    @task(2)
    def me(self) -> None:
        self.client.get("/api/me", headers=self.auth, name="GET /me")

    @task(1)
    def refresh(self) -> None:
        body = {"refresh_token": self.tokens["refresh_token"]}
        r = self.client.post("/api/auth/refresh", json=body, name="POST /auth/refresh")
        if r.status_code == 200:
            self.tokens = r.json()

    @task(1)
    def log_in_again(self) -> None:
        self.log_in()

    @task(1)
    def health(self) -> None:
        self.client.get("/api/health", name="GET /health")
