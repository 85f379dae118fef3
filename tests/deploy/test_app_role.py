"""The app's least-privilege role (deploy/app_role.py) against a real PostgreSQL: granted
on an empty database, before any migration, it serves every kind of request the API makes
once the migration role has created the schema at start-up, and it cannot change the
schema itself."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from psycopg import errors, sql
from sqlalchemy.engine import make_url

from deploy import app_role
from deploy.app_role import libpq_uri
from tests.factories import PASSWORD, PNG, WAV, b64, bearer, new_email, sign_up
from tests.fake_openai import FakeOpenAI
from tests.outbox import Outbox


@pytest.fixture
def app_uri(
    make_database: Callable[..., str],
    override_settings: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """The app connected as a role of its own, created as README "Deploy" says; migrations
    run as the database's owner."""
    from api import db

    owner_uri = make_database()  # empty: the app migrates it at start-up
    role = f"axly_app_{uuid.uuid4().hex[:12]}"  # roles are server-wide: unique per test
    url = make_url(owner_uri).set(username=role, password=secrets.token_urlsafe(16))
    uri = url.render_as_string(hide_password=False)
    with monkeypatch.context() as env:
        env.setenv("DB_MIGRATION_URI", owner_uri)
        env.setenv("DB_URI", uri)
        assert app_role.main() == 0
    override_settings(
        DB_URI=uri, DB_POOLER="none", DB_MIGRATION_URI=owner_uri, DB_MIGRATE_ON_STARTUP="true"
    )
    try:
        yield uri
    finally:
        db.dispose_engine()
        with psycopg.connect(libpq_uri(owner_uri), autocommit=True) as owner:
            owner.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_app_role_serves_every_kind_of_request(
    app_uri: str,
    new_client: Callable[[], httpx.Client],
    provider: FakeOpenAI,
    outbox: Outbox,
):
    with new_client() as client:
        health = client.get("/health")
        assert health.status_code == 200, health.text  # migrated by the owner, read by the app
        email = new_email()
        sign_up(client, outbox, email)
        login = client.post("/login", json={"email": email, "password": "wrong password 1"})
        assert login.status_code == 401  # a failed login is recorded
        login = client.post("/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200
        tokens = login.json()
        auth = bearer(tokens["access_token"])
        refreshed = client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 200
        vehicle = client.post(
            "/vehicles",
            headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
            json={"make": "Honda", "model": "Accord", "year": 2003},
        )
        assert vehicle.status_code == 201
        path = f"/vehicles/{vehicle.json()['id']}"
        assert client.patch(path, headers=auth, json={"nickname": "Rosie"}).status_code == 200
        mod = client.post(f"{path}/mods", headers=auth, json={"name": "Cold air intake"})
        assert mod.status_code == 201
        assert client.delete(f"{path}/mods/{mod.json()['id']}", headers=auth).status_code == 204
        turn = client.post(
            "/diagnose2",
            headers=auth,
            json={
                "q": "Rattle at idle",
                "vehicle_id": vehicle.json()["id"],
                "images": [b64(PNG)],
                "audio": b64(WAV),
            },
        )
        assert turn.status_code == 200, turn.text
        conversation = f"/conversations/{turn.json()['session_id']}"
        assert client.get("/me/usage", headers=auth).status_code == 200
        assert client.patch(conversation, headers=auth, json={"title": "Idle"}).status_code == 200
        assert client.delete(conversation, headers=auth).status_code == 204
        assert client.delete(path, headers=auth).status_code == 204
        assert client.post("/logout", headers=auth, json={"all": True}).status_code == 204
        new_login = client.post("/login", json={"email": email, "password": PASSWORD})
        auth = bearer(new_login.json()["access_token"])
        gone = client.request("DELETE", "/me", headers=auth, json={"password": PASSWORD})
        assert gone.status_code == 204
    with psycopg.connect(libpq_uri(app_uri)) as app:
        assert app.execute("SELECT count(*) FROM users").fetchone() == (0,)


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE users",
        "ALTER TABLE users ADD COLUMN nickname text",
        "TRUNCATE conversations",
        "CREATE TABLE scratch (id int)",
        "CREATE INDEX users_scratch ON users (created_at)",
    ],
)
def test_the_app_role_cannot_change_the_schema(app_uri: str, statement: str):
    from api import db

    db.schema_status()  # the app's start-up: the owner migrates
    with (
        psycopg.connect(libpq_uri(app_uri)) as app,
        pytest.raises(errors.InsufficientPrivilege),
    ):
        app.execute(statement)


def test_the_app_role_is_never_the_migration_role(
    make_database: Callable[..., str], monkeypatch: pytest.MonkeyPatch
):
    owner = make_url(make_database()).set(password="the owner's password")
    monkeypatch.setenv("DB_MIGRATION_URI", owner.render_as_string(hide_password=False))
    monkeypatch.setenv("DB_URI", owner.render_as_string(hide_password=False))
    assert app_role.main() == 2
