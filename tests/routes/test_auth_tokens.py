"""Token attacks and refresh-token rotation: every forged, stale or misused token is a 401
with `WWW-Authenticate: Bearer`, and a replayed refresh token ends its whole family."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest
import time_machine
from sqlalchemy import delete
from sqlalchemy.orm import Session, object_session

from api.endpoints import Operation
from api.models import User
from api.routes import routers
from api.services.auth import start_session
from api.services.tokens import decode_token
from api.settings import get_settings
from tests.factories import (
    PASSWORD,
    auth_headers,
    bearer,
    create_user,
    example_path,
    new_email,
    sign_up,
)
from tests.outbox import Outbox


def assert_rejected(client: httpx.Client, token: str) -> dict:
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    return response.json()


def claims_for(user: User, **overrides) -> dict:
    """Well-formed access-token claims for `user`, in a live session of its own."""
    settings = get_settings()
    now = datetime.now(UTC)
    session = object_session(user)
    assert session is not None
    bundle = start_session(session=session, user=user)
    return {
        "sub": str(user.id),
        "sid": str(decode_token(bundle.access_token, "access")["sid"]),
        "iat": now,
        "exp": now + timedelta(minutes=5),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "typ": "access",
        "ver": 0,
        **overrides,
    }


def forge(claims: dict, secret: str | None = None) -> str:
    return jwt.encode(claims, secret or get_settings().jwt_secret, algorithm="HS256")


def b64(part: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(part, default=str).encode()).rstrip(b"=").decode()


def test_a_well_formed_token_is_accepted(client: httpx.Client, session: Session) -> None:
    """The control for the attacks below: the same claims, correctly signed, work."""
    user = create_user(session)
    assert client.get("/me", headers=bearer(forge(claims_for(user)))).status_code == 200


def test_alg_none_is_refused(client: httpx.Client, session: Session) -> None:
    user = create_user(session)
    claims = claims_for(user)
    claims = {
        **claims,
        "iat": int(claims["iat"].timestamp()),
        "exp": int(claims["exp"].timestamp()),
    }
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."
    assert_rejected(client, unsigned)


def test_wrong_secret_is_refused(client: httpx.Client, session: Session) -> None:
    user = create_user(session)
    assert_rejected(client, forge(claims_for(user), secret="another-secret-" + "x" * 32))


def test_tampered_payload_is_refused(client: httpx.Client, session: Session) -> None:
    user, other = create_user(session), create_user(session)
    header, _, signature = forge(claims_for(user)).split(".")
    forged_claims = claims_for(other)
    forged_claims = {
        **forged_claims,
        "iat": int(forged_claims["iat"].timestamp()),
        "exp": int(forged_claims["exp"].timestamp()),
    }
    assert_rejected(client, f"{header}.{b64(forged_claims)}.{signature}")


def test_expired_token_is_refused(client: httpx.Client, session: Session) -> None:
    user = create_user(session)
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False) as traveller:
        headers = auth_headers(user)
        assert client.get("/me", headers=headers).status_code == 200
        traveller.shift(timedelta(minutes=30, seconds=1))
        body = assert_rejected(client, headers["Authorization"].split()[1])
    assert body["code"] == "token_expired"


@pytest.mark.parametrize(
    "override",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"typ": "refresh"},
        {"ver": "0"},
        {"sid": "not-a-session-id"},
    ],
)
def test_wrong_audience_issuer_type_version_or_session_is_refused(
    client: httpx.Client, session: Session, override: dict
) -> None:
    user = create_user(session)
    assert_rejected(client, forge(claims_for(user, **override)))


@pytest.mark.parametrize("missing", ["sub", "exp", "aud", "typ", "ver", "sid"])
def test_missing_claims_are_refused(client: httpx.Client, session: Session, missing: str) -> None:
    user = create_user(session)
    claims = claims_for(user)
    del claims[missing]
    assert_rejected(client, forge(claims))


@pytest.mark.parametrize("header", ["", "Bearer", "Bearer ", "Basic abc", "Bearer not.a.jwt"])
def test_missing_or_malformed_authorization_is_refused(client: httpx.Client, header: str) -> None:
    response = client.get("/me", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_refresh_token_cannot_be_used_as_access_token(client: httpx.Client, outbox: Outbox) -> None:
    bundle = sign_up(client, outbox)
    assert "send the access token" in assert_rejected(client, bundle["refresh_token"])["detail"]
    # ... nor the other way round.
    response = client.post("/auth/refresh", json={"refresh_token": bundle["access_token"]})
    assert response.status_code == 401
    assert "send the refresh token" in response.json()["detail"]


def test_tokens_die_after_password_change(client: httpx.Client, outbox: Outbox) -> None:
    bundle = sign_up(client, outbox)
    client.post(
        "/change_password",
        json={"current_password": PASSWORD, "new_password": "Fresh new passphrase 9"},
        headers=bearer(bundle["access_token"]),
    )
    body = assert_rejected(client, bundle["access_token"])
    assert body["code"] == "session_ended"


def test_tokens_die_after_password_reset(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    bundle = sign_up(client, outbox, email)
    client.post("/request_password_reset_pin", json={"email": email})
    reset = client.post(
        "/confirm_password_reset",
        json={"email": email, "pin": outbox.pin_for(email), "new_password": "Fresh one 123"},
    )
    assert reset.status_code == 200
    assert_rejected(client, bundle["access_token"])


def test_logout_all_ends_every_session(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    phone = sign_up(client, outbox, email)
    tablet = client.post("/login", json={"email": email, "password": PASSWORD}).json()
    response = client.post("/logout", json={"all": True}, headers=bearer(phone["access_token"]))
    assert response.status_code == 204
    for bundle in (phone, tablet):
        assert_rejected(client, bundle["access_token"])
        refresh = client.post("/auth/refresh", json={"refresh_token": bundle["refresh_token"]})
        assert refresh.status_code == 401
    # Logging in again starts afresh.
    again = client.post("/login", json={"email": email, "password": PASSWORD}).json()
    assert client.get("/me", headers=bearer(again["access_token"])).status_code == 200


def test_logout_of_one_session_leaves_the_others(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    phone = sign_up(client, outbox, email)
    tablet = client.post("/login", json={"email": email, "password": PASSWORD}).json()
    client.post(
        "/logout",
        json={"refresh_token": phone["refresh_token"]},
        headers=bearer(phone["access_token"]),
    )
    gone = client.post("/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert gone.status_code == 401
    kept = client.post("/auth/refresh", json={"refresh_token": tablet["refresh_token"]})
    assert kept.status_code == 200


def test_tokens_die_with_the_account(client: httpx.Client, outbox: Outbox) -> None:
    bundle = sign_up(client, outbox)
    deleted = client.request(
        "DELETE", "/me", json={"password": PASSWORD}, headers=bearer(bundle["access_token"])
    )
    assert deleted.status_code == 204
    assert assert_rejected(client, bundle["access_token"])["code"] == "account_deleted"
    refresh = client.post("/auth/refresh", json={"refresh_token": bundle["refresh_token"]})
    assert refresh.status_code == 401
    assert refresh.json()["code"] == "account_deleted"


AUTHENTICATED = [op for router in routers() for op in router.operations if op.auth]


@pytest.mark.parametrize(
    "op", AUTHENTICATED, ids=[f"{op.method} {op.route}" for op in AUTHENTICATED]
)
def test_every_route_answers_a_deleted_accounts_token_401_account_deleted(
    client: httpx.Client, session: Session, user: User, op: Operation
) -> None:
    headers = auth_headers(user)
    session.execute(delete(User).where(User.id == user.id))
    response = client.request(op.method, example_path(op), headers=headers, json={})
    assert response.status_code == 401, response.text
    assert response.json()["code"] == "account_deleted"


def test_refresh_rotates_and_a_replayed_token_revokes_the_family(
    client: httpx.Client, outbox: Outbox
) -> None:
    email = new_email()
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False) as clock:
        first = sign_up(client, outbox, email)
        other_device = client.post("/login", json={"email": email, "password": PASSWORD}).json()

        second = refresh(client, first).json()
        third = refresh(client, second).json()
        assert len({first["refresh_token"], second["refresh_token"], third["refresh_token"]}) == 3

        # A thief replays the first token after the reuse interval: refused, and every token
        # of that login dies, access tokens included ...
        clock.shift(timedelta(seconds=11))
        replay = refresh(client, first)
        assert replay.status_code == 401
        assert replay.json()["code"] == "refresh_token_reused"
        assert refresh(client, third).status_code == 401
        assert assert_rejected(client, third["access_token"])["code"] == "session_ended"
        # ... but the user's other login goes on.
        assert refresh(client, other_device).status_code == 200


def test_the_same_refresh_token_twice_within_the_interval_keeps_the_session(
    client: httpx.Client, outbox: Outbox
) -> None:
    """An app refreshing from two screens at once (Supabase Auth allows 10 s for this)."""
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False) as clock:
        first = sign_up(client, outbox)
        one = refresh(client, first)
        clock.shift(timedelta(seconds=9))
        two = refresh(client, first)
        assert (one.status_code, two.status_code) == (200, 200)
        for pair in (one.json(), two.json()):
            assert client.get("/me", headers=bearer(pair["access_token"])).status_code == 200
            assert refresh(client, pair).status_code == 200


def refresh(client: httpx.Client, bundle: dict) -> httpx.Response:
    return client.post("/auth/refresh", json={"refresh_token": bundle["refresh_token"]})


@pytest.mark.parametrize("how", ["logout", "logout_with_refresh_token", "reuse", "password"])
def test_an_access_token_dies_with_its_session_not_when_it_expires(
    client: httpx.Client, outbox: Outbox, how: str
) -> None:
    """Access tokens used to work for up to 30 minutes after their session ended."""
    email = new_email()
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False) as clock:
        bundle = sign_up(client, outbox, email)
        other = client.post("/login", json={"email": email, "password": PASSWORD}).json()
        headers = bearer(bundle["access_token"])
        by_other = bearer(other["access_token"])
        if how == "logout":
            assert client.post("/logout", headers=headers).status_code == 204
        elif how == "logout_with_refresh_token":
            body = {"refresh_token": bundle["refresh_token"]}
            assert client.post("/logout", json=body, headers=by_other).status_code == 204
        elif how == "reuse":
            refresh(client, bundle)
            clock.shift(timedelta(seconds=11))
            assert refresh(client, bundle).status_code == 401
        else:
            change = {"current_password": PASSWORD, "new_password": "Another long passphrase 7"}
            assert client.post("/change_password", json=change, headers=by_other).status_code == 200
        assert assert_rejected(client, bundle["access_token"])["code"] == "session_ended"
        if how != "password":  # a password change ends every other session; these only one
            assert client.get("/me", headers=by_other).status_code == 200


def test_the_session_check_costs_no_extra_statement(
    client: httpx.Client, session: Session, connection, outbox: Outbox
) -> None:
    import psycopg

    bundle = sign_up(client, outbox)
    statements: list[str] = []

    class Capturing(psycopg.Cursor):  # what reads and sessions alike send, through psycopg
        def execute(self, query, params=None, **options):
            if not str(query).lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK")):
                statements.append(str(query))
            return super().execute(query, params, **options)

    raw = connection.connection.driver_connection
    raw.cursor_factory = Capturing
    try:
        assert client.get("/me", headers=bearer(bundle["access_token"])).status_code == 200
    finally:
        raw.cursor_factory = psycopg.Cursor
    (statement,) = statements  # the user and its session, read together
    assert "refresh_tokens" in statement
    assert "users" in statement


def test_expired_refresh_token_is_refused(client: httpx.Client, outbox: Outbox) -> None:
    with time_machine.travel(datetime(2030, 1, 1, tzinfo=UTC), tick=False) as traveller:
        bundle = sign_up(client, outbox)
        traveller.shift(timedelta(days=30, seconds=1))
        response = client.post("/auth/refresh", json={"refresh_token": bundle["refresh_token"]})
    assert response.status_code == 401
    assert response.json()["code"] == "token_expired"
