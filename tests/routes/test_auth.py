"""The accounts area through the local host: sign-up by PIN, login, refresh, logout,
password reset and change, me, account deletion; PIN rules, throttles, enumeration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import time_machine
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.models import (
    ChatAttachment,
    ChatMessage,
    Conversation,
    EmailVerification,
    LoginFailure,
    RefreshToken,
    User,
    Vehicle,
    VehicleMod,
)
from api.services.pins import pin_hmac
from tests.factories import (
    PASSWORD,
    add_conversation,
    add_image,
    auth_headers,
    bearer,
    create_user,
    new_email,
    sign_up,
)
from tests.outbox import Outbox

NEW_PASSWORD = "An entirely new passphrase 7"
T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


def assert_token_bundle(body: dict, email: str) -> None:
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 30 * 60
    assert body["access_token"]
    assert body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]
    assert body["user"]["email"] == email
    assert set(body["user"]) == {"id", "email", "created_at"}


def login(client: httpx.Client, email: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/login", json={"email": email, "password": password})


# --- happy paths ------------------------------------------------------------------------


def test_signup_with_emailed_pin_then_me(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    response = client.post("/request_pin", json={"email": f"  {email.upper()} "})
    assert response.status_code == 202
    assert response.json() == {"message": response.json()["message"]}
    sent = outbox.last_to(email)  # trimmed and lower-cased
    assert "sign-up code" in sent.subject

    bundle = sign_up_with(client, email, outbox.pin_for(email))
    assert_token_bundle(bundle, email)

    me = client.get("/me", headers=bearer(bundle["access_token"]))
    assert me.status_code == 200
    assert me.json() == bundle["user"]


def sign_up_with(client: httpx.Client, email: str, pin: str) -> dict:
    response = client.post(
        "/confirm_signup", json={"email": email, "password": PASSWORD, "pin": pin}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_login_with_email_and_password(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    sign_up(client, outbox, email)
    response = login(client, f" {email.upper()}")
    assert response.status_code == 200
    assert_token_bundle(response.json(), email)
    assert client.get("/me", headers=bearer(response.json()["access_token"])).status_code == 200


def test_seed_system_user_logs_in_once_with_old_hash_then_with_ours(
    client: httpx.Client, session: Session
) -> None:
    import bcrypt

    from api.utils.hashing import LEGACY_PREFIX

    email = new_email()
    legacy = LEGACY_PREFIX + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
    user = create_user(session, email=email)
    user.password_hash = legacy
    session.flush()

    assert login(client, email, "not the password at all").status_code == 401
    assert login(client, email).status_code == 200
    session.refresh(user)
    assert not user.password_hash.startswith(LEGACY_PREFIX)  # replaced by our scheme
    assert login(client, email).status_code == 200


def test_login_gives_one_message_for_unknown_email_and_wrong_password(
    client: httpx.Client, outbox: Outbox
) -> None:
    email = new_email()
    sign_up(client, outbox, email)
    wrong_password = login(client, email, "not the password at all")
    unknown = login(client, new_email())
    for response in (wrong_password, unknown):
        assert response.status_code == 401
        assert response.json()["detail"] == "Wrong e-mail or password"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert wrong_password.json() == unknown.json()


def test_refresh_logout_and_password_change(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    first = sign_up(client, outbox, email)
    refreshed = client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert refreshed.status_code == 200
    assert_token_bundle(refreshed.json(), email)
    assert refreshed.json()["refresh_token"] != first["refresh_token"]

    other = login(client, email).json()
    changed = client.post(
        "/change_password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(other["access_token"]),
    )
    assert changed.status_code == 200
    assert_token_bundle(changed.json(), email)
    # Other sessions end; the new bundle works; only the new password logs in.
    assert client.get("/me", headers=bearer(first["access_token"])).status_code == 401
    refresh_old = client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert refresh_old.status_code == 401
    assert client.get("/me", headers=bearer(changed.json()["access_token"])).status_code == 200
    assert login(client, email).status_code == 401
    assert login(client, email, NEW_PASSWORD).status_code == 200

    current = changed.json()
    logout = client.post(
        "/logout",
        json={"refresh_token": current["refresh_token"]},
        headers=bearer(current["access_token"]),
    )
    assert logout.status_code == 204
    assert logout.content == b""
    after = client.post("/auth/refresh", json={"refresh_token": current["refresh_token"]})
    assert after.status_code == 401


def test_change_password_needs_the_current_one(client: httpx.Client, outbox: Outbox) -> None:
    bundle = sign_up(client, outbox)
    response = client.post(
        "/change_password",
        json={"current_password": "a wrong guess here", "new_password": NEW_PASSWORD},
        headers=bearer(bundle["access_token"]),
    )
    assert response.status_code == 403
    assert response.json()["code"] == "wrong_password"
    assert client.get("/me", headers=bearer(bundle["access_token"])).status_code == 200


def test_password_reset_with_emailed_pin(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    before = sign_up(client, outbox, email)
    response = client.post("/request_password_reset_pin", json={"email": email})
    assert response.status_code == 202
    assert "password reset code" in outbox.last_to(email).subject

    reset = client.post(
        "/confirm_password_reset",
        json={"email": email, "pin": outbox.pin_for(email), "new_password": NEW_PASSWORD},
    )
    assert reset.status_code == 200
    assert_token_bundle(reset.json(), email)
    assert client.get("/me", headers=bearer(before["access_token"])).status_code == 401
    refresh = client.post("/auth/refresh", json={"refresh_token": before["refresh_token"]})
    assert refresh.status_code == 401
    assert login(client, email).status_code == 401
    assert login(client, email, NEW_PASSWORD).status_code == 200


def test_delete_me_removes_every_row_the_user_owned(
    client: httpx.Client, outbox: Outbox, session: Session
) -> None:
    email = new_email()
    bundle = sign_up(client, outbox, email)
    login(client, email, "one wrong password")  # leaves a login-failure row
    client.post("/request_password_reset_pin", json={"email": email})
    user_id = bundle["user"]["id"]
    vehicle = Vehicle(user_id=user_id, make="VW", model="Golf", year="2004")
    session.add(vehicle)
    session.flush()
    session.add(VehicleMod(vehicle_id=vehicle.id, name="Coilovers"))
    conversation = add_conversation(session, user_id, vehicle_id=vehicle.id, title="Rough idle")
    message = ChatMessage(conversation_id=conversation.id, role="user", content={"t": "hi"})
    session.add(message)
    session.flush()
    add_image(session, message)
    bystander = create_user(session)
    session.add(Vehicle(user_id=bystander.id, make="Fiat", model="Panda", year="2010"))
    session.flush()

    wrong = client.request(
        "DELETE", "/me", json={"password": "not it at all"}, headers=bearer(bundle["access_token"])
    )
    assert wrong.status_code == 403
    response = client.request(
        "DELETE", "/me", json={"password": PASSWORD}, headers=bearer(bundle["access_token"])
    )
    assert response.status_code == 204

    session.expire_all()
    counts = {
        model.__name__: session.scalar(select(func.count()).select_from(model))
        for model in (VehicleMod, ChatAttachment, ChatMessage, Conversation, RefreshToken)
    }
    assert counts == dict.fromkeys(counts, 0)
    assert session.get(User, user_id) is None
    assert session.scalar(select(func.count()).where(Vehicle.user_id == bystander.id)) == 1
    assert session.scalar(select(func.count()).select_from(Vehicle)) == 1
    for keyed_by_email in (EmailVerification, LoginFailure):
        rows = select(func.count()).where(keyed_by_email.email == email)
        assert session.scalar(rows) == 0
    assert client.get("/me", headers=bearer(bundle["access_token"])).status_code == 401
    assert login(client, email).status_code == 401


# --- PIN rules ------------------------------------------------------------------------------


def confirm(client: httpx.Client, email: str, pin: str) -> httpx.Response:
    return client.post("/confirm_signup", json={"email": email, "password": PASSWORD, "pin": pin})


def test_pin_expires_after_pin_exp_minutes(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    with time_machine.travel(T0, tick=False) as traveller:
        client.post("/request_pin", json={"email": email})
        traveller.shift(timedelta(minutes=10, seconds=1))
        response = confirm(client, email, outbox.pin_for(email))
    assert response.status_code == 403
    assert response.json()["code"] == "invalid_pin"


def test_pin_works_until_it_expires(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    with time_machine.travel(T0, tick=False) as traveller:
        client.post("/request_pin", json={"email": email})
        traveller.shift(timedelta(minutes=9, seconds=59))
        assert confirm(client, email, outbox.pin_for(email)).status_code == 201


def test_pin_is_single_use(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    client.post("/request_pin", json={"email": email})
    pin = outbox.pin_for(email)
    assert confirm(client, email, pin).status_code == 201
    again = confirm(client, email, pin)
    assert again.status_code == 403
    assert again.json()["code"] == "invalid_pin"


def test_pin_is_bound_to_its_purpose(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    sign_up(client, outbox, email)
    client.post("/request_password_reset_pin", json={"email": email})
    reset_pin = outbox.pin_for(email)
    # A reset PIN cannot confirm a sign-up (for another address either) ...
    other = new_email()
    client.post("/request_pin", json={"email": other})
    assert confirm(client, other, reset_pin).status_code == 403
    # ... and a sign-up PIN cannot reset a password.
    signup_pin = outbox.pin_for(other)
    reset = client.post(
        "/confirm_password_reset",
        json={"email": email, "pin": signup_pin, "new_password": NEW_PASSWORD},
    )
    assert reset.status_code == 403
    assert login(client, email).status_code == 200


def test_fifth_wrong_try_kills_the_pin(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    client.post("/request_pin", json={"email": email})
    pin = outbox.pin_for(email)
    wrong = f"{(int(pin) + 1) % 1_000_000:06d}"
    details = [confirm(client, email, wrong).json()["detail"] for _ in range(5)]
    assert "Too many wrong tries" in details[-1]
    assert all("Too many" not in detail for detail in details[:-1])
    dead = confirm(client, email, pin)
    assert dead.status_code == 403
    assert dead.json()["code"] == "invalid_pin"


def test_four_wrong_tries_leave_the_pin_usable(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    client.post("/request_pin", json={"email": email})
    pin = outbox.pin_for(email)
    wrong = f"{(int(pin) + 1) % 1_000_000:06d}"
    for _ in range(4):
        assert confirm(client, email, wrong).status_code == 403
    assert confirm(client, email, pin).status_code == 201


def test_new_request_replaces_the_previous_pin(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    with time_machine.travel(T0, tick=False) as traveller:
        client.post("/request_pin", json={"email": email})
        first = outbox.pin_for(email)
        traveller.shift(timedelta(seconds=61))
        client.post("/request_pin", json={"email": email})
        second = outbox.pin_for(email)
        if first != second:  # one in a million they are equal
            assert confirm(client, email, first).status_code == 403
        assert confirm(client, email, second).status_code == 201


def test_pins_are_stored_only_as_hmacs(
    client: httpx.Client, outbox: Outbox, session: Session
) -> None:
    email = new_email()
    client.post("/request_pin", json={"email": email})
    pin = outbox.pin_for(email)
    (stored,) = session.scalars(select(EmailVerification).where(EmailVerification.email == email))
    assert pin not in stored.pin_hmac
    assert len(stored.pin_hmac) == 64
    assert stored.purpose == "signup"


def test_resend_is_throttled_per_minute_and_per_hour(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    with time_machine.travel(T0, tick=False) as traveller:
        assert client.post("/request_pin", json={"email": email}).status_code == 202
        traveller.shift(timedelta(seconds=20))
        too_soon = client.post("/request_pin", json={"email": email})
        assert too_soon.status_code == 429
        assert too_soon.headers["Retry-After"] == "40"
        assert too_soon.json()["retry_after"] == 40
        assert "wait 40 seconds" in too_soon.json()["detail"]
        # Another purpose has its own allowance.
        reset = client.post("/request_password_reset_pin", json={"email": email})
        assert reset.status_code == 202

        for _ in range(4):  # five sends in the hour in all
            traveller.shift(timedelta(seconds=60))
            assert client.post("/request_pin", json={"email": email}).status_code == 202
        traveller.shift(timedelta(minutes=10))
        hourly = client.post("/request_pin", json={"email": email})
        assert hourly.status_code == 429
        # The first send (at T0) leaves the window at T0 + 1 h.
        elapsed = timedelta(seconds=20 + 4 * 60, minutes=10)
        assert int(hourly.headers["Retry-After"]) == (timedelta(hours=1) - elapsed).seconds
        assert "5 PINs an hour" in hourly.json()["detail"]
        sent = len(outbox.messages)

        traveller.shift(timedelta(hours=1) - elapsed)
        assert client.post("/request_pin", json={"email": email}).status_code == 202
        assert len(outbox.messages) == sent + 1


def test_no_enumeration_through_pin_requests(
    client: httpx.Client, outbox: Outbox, session: Session
) -> None:
    registered = create_user(session, email=new_email(), password=PASSWORD).email
    fresh = new_email()
    for route in ("/request_pin", "/request_password_reset_pin"):
        known = client.post(route, json={"email": registered})
        unknown = client.post(route, json={"email": fresh})
        assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
        assert known.status_code == 202
        # The throttle answers alike too.
        known_again = client.post(route, json={"email": registered})
        unknown_again = client.post(route, json={"email": fresh})
        assert known_again.status_code == unknown_again.status_code == 429
        assert known_again.json()["detail"] == unknown_again.json()["detail"]
    # What differs is only the e-mail each owner receives.
    messages = [(m.to, m.subject) for m in outbox.messages]
    assert (registered, "Axly: you already have an account") in messages
    assert (fresh, "Axly: your sign-up code") in messages
    assert (registered, "Axly: your password reset code") in messages
    assert (fresh, "Axly: password reset requested") in messages


def test_signup_pin_for_a_registered_email_cannot_create_a_second_account(
    client: httpx.Client, outbox: Outbox, session: Session
) -> None:
    email = create_user(session, password=PASSWORD).email
    client.post("/request_pin", json={"email": email})
    assert all(not any(ch.isdigit() for ch in m.text) for m in outbox.messages if m.to == email)
    # Even a correctly guessed PIN (planted here, as the PIN is never sent) creates nothing.
    (stored,) = session.scalars(select(EmailVerification).where(EmailVerification.email == email))
    stored.pin_hmac = pin_hmac("123456", email=email, purpose="signup")
    session.flush()
    response = confirm(client, email, "123456")
    assert response.status_code == 409
    assert session.scalar(select(func.count()).where(User.email == email)) == 1
    assert login(client, email).status_code == 200


# --- login throttling -------------------------------------------------------------------


def test_ten_failed_logins_lock_the_account_for_fifteen_minutes(
    client: httpx.Client, outbox: Outbox
) -> None:
    email = new_email()
    sign_up(client, outbox, email)
    with time_machine.travel(T0, tick=False) as traveller:
        for _ in range(10):
            assert login(client, email, "wrong password!").status_code == 401
            traveller.shift(timedelta(seconds=30))
        locked = login(client, email)  # even the right password
        assert locked.status_code == 429
        assert locked.json()["code"] == "too_many_login_failures"
        # The first failure (T0) leaves the 15-minute window at T0 + 15 min.
        assert int(locked.headers["Retry-After"]) == 15 * 60 - 10 * 30
        traveller.shift(timedelta(seconds=15 * 60 - 10 * 30))
        assert login(client, email).status_code == 200


def test_unknown_emails_are_throttled_like_accounts(client: httpx.Client) -> None:
    email = new_email()
    with time_machine.travel(T0, tick=False):
        for _ in range(10):
            assert login(client, email, "anything at all").status_code == 401
        assert login(client, email).status_code == 429


def test_expired_failure_records_of_every_address_are_pruned(
    client: httpx.Client, session: Session
) -> None:
    abandoned, later = new_email(), new_email()
    with time_machine.travel(T0, tick=False) as traveller:
        login(client, abandoned, "never tried again")
        traveller.shift(timedelta(minutes=16))
        login(client, later, "wrong password!")
    stored = session.scalars(select(LoginFailure.email)).all()
    assert stored == [later]


def test_a_successful_login_clears_earlier_failures(client: httpx.Client, outbox: Outbox) -> None:
    email = new_email()
    sign_up(client, outbox, email)
    with time_machine.travel(T0, tick=False):
        for _ in range(9):
            login(client, email, "wrong password!")
        assert login(client, email).status_code == 200
        for _ in range(9):
            login(client, email, "wrong password!")
        assert login(client, email).status_code == 200


# --- input rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short7!", "at least 8"),
        ("x" * 129, "at most 128"),
        ("password1", "too common"),
        ("Sunshine1", "too common"),  # compared case-insensitively
    ],
)
def test_weak_passwords_are_refused(
    client: httpx.Client, outbox: Outbox, password: str, reason: str
) -> None:
    email = new_email()
    client.post("/request_pin", json={"email": email})
    response = client.post(
        "/confirm_signup",
        json={"email": email, "password": password, "pin": outbox.pin_for(email)},
    )
    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert error["field"] == "body.password"
    assert reason in error["message"]
    # Nothing was used up: the same PIN still confirms with a good password.
    assert sign_up_with(client, email, outbox.pin_for(email))["user"]["email"] == email


def test_passwords_are_not_trimmed_and_long_ones_count_in_full(
    client: httpx.Client, outbox: Outbox
) -> None:
    email = new_email()
    long_password = "ü" * 100 + "end"  # 203 bytes: far past bcrypt's 72
    sign_up(client, outbox, email, password=long_password)
    assert login(client, email, long_password).status_code == 200
    assert login(client, email, "ü" * 100 + "enD").status_code == 401
    assert login(client, email, f" {long_password}").status_code == 401


@pytest.mark.parametrize("email", ["not-an-email", "a@b", "two@@example.com", "x" * 250 + "@a.io"])
def test_invalid_emails_are_422(client: httpx.Client, email: str) -> None:
    response = client.post("/request_pin", json={"email": email})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.email"


@pytest.mark.parametrize("body", [None, {}], ids=["no body", "empty object"])
def test_logout_without_fields_ends_the_callers_own_session(
    client: httpx.Client, outbox: Outbox, body: dict | None
) -> None:
    email = new_email()
    phone = sign_up(client, outbox, email)
    tablet = login(client, email).json()
    response = client.post("/logout", json=body, headers=bearer(phone["access_token"]))
    assert response.status_code == 204
    ended = client.post("/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    assert ended.status_code == 401
    kept = client.post("/auth/refresh", json={"refresh_token": tablet["refresh_token"]})
    assert kept.status_code == 200


def test_logout_ignores_a_token_of_another_user(
    client: httpx.Client, outbox: Outbox, session: Session
) -> None:
    victim = sign_up(client, outbox)
    attacker = create_user(session)
    response = client.post(
        "/logout", json={"refresh_token": victim["refresh_token"]}, headers=auth_headers(attacker)
    )
    assert response.status_code == 204
    refresh = client.post("/auth/refresh", json={"refresh_token": victim["refresh_token"]})
    assert refresh.status_code == 200
