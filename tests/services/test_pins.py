"""The PIN service on the real database: what it stores, when a PIN works, how wrong tries
and resends are counted, and what each refusal says (status, code, Retry-After, whether the
failed request's writes are kept)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import ForbiddenError, RateLimitedError
from api.models import EmailVerification
from api.services import pins
from tests.factories import count, new_email

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(T0, tick=False) as traveller:
        yield traveller


def rows(session: Session, email: str) -> list[EmailVerification]:
    """The address's rows as the request's commit would store them."""
    session.flush()
    return list(
        session.scalars(
            select(EmailVerification)
            .where(EmailVerification.email == email)
            .order_by(EmailVerification.created_at)
        )
    )


def test_a_pin_is_six_digits_stored_only_as_its_hmac_and_works_once(
    session: Session, clock: time_machine.Traveller
) -> None:
    email = new_email()
    pin = pins.issue_pin(session=session, email=email, purpose="signup")
    assert len(pin) == 6
    assert pin.isdigit()
    (stored,) = rows(session, email)
    assert stored.pin_hmac == pins.pin_hmac(pin, email=email, purpose="signup")
    assert pin not in stored.pin_hmac
    assert stored.expires_at == T0 + timedelta(minutes=10)

    pins.consume_pin(session=session, email=email, purpose="signup", pin=pin)
    assert rows(session, email)[0].consumed_at == T0
    with pytest.raises(ForbiddenError) as again:
        pins.consume_pin(session=session, email=email, purpose="signup", pin=pin)
    assert again.value.code == "invalid_pin"


@pytest.mark.parametrize(
    ("email_of", "purpose"),
    [("another", "signup"), ("same", "password_reset")],
    ids=["another address", "another purpose"],
)
def test_a_pin_works_only_for_its_address_and_purpose(
    session: Session, email_of: str, purpose: pins.Purpose
) -> None:
    email = new_email()
    pin = pins.issue_pin(session=session, email=email, purpose="signup")
    pins.issue_pin(session=session, email=email, purpose="password_reset")
    other = new_email()
    pins.issue_pin(session=session, email=other, purpose="signup")
    target = other if email_of == "another" else email
    with pytest.raises(ForbiddenError):
        pins.consume_pin(session=session, email=target, purpose=purpose, pin=pin)


def test_an_expired_pin_is_refused(session: Session, clock: time_machine.Traveller) -> None:
    email = new_email()
    pin = pins.issue_pin(session=session, email=email, purpose="signup")
    clock.shift(timedelta(minutes=10))
    with pytest.raises(ForbiddenError):
        pins.consume_pin(session=session, email=email, purpose="signup", pin=pin)


def test_wrong_tries_are_counted_and_kept_and_the_last_allowed_one_kills_the_pin(
    session: Session,
) -> None:
    email = new_email()
    pin = pins.issue_pin(session=session, email=email, purpose="signup")
    wrong = f"{(int(pin) + 1) % 10**6:06d}"
    for tries in range(1, pins.MAX_WRONG_TRIES + 1):
        with pytest.raises(ForbiddenError) as refused:
            pins.consume_pin(session=session, email=email, purpose="signup", pin=wrong)
        assert refused.value.keep_changes  # the request fails, its count stays
        assert rows(session, email)[0].attempts == tries
    assert refused.value.detail == pins.DEAD_PIN
    assert rows(session, email)[0].consumed_at is not None
    with pytest.raises(ForbiddenError):
        pins.consume_pin(session=session, email=email, purpose="signup", pin=pin)


def test_a_new_pin_replaces_the_unused_one_and_old_rows_are_pruned(
    session: Session, clock: time_machine.Traveller
) -> None:
    email = new_email()
    first = pins.issue_pin(session=session, email=email, purpose="signup")
    clock.shift(pins.SEND_WINDOW)
    assert [row.created_at for row in rows(session, email)] == [T0]
    second = pins.issue_pin(session=session, email=email, purpose="signup")
    (kept,) = rows(session, email)  # the first one left the window: its row is gone
    assert kept.created_at == T0 + pins.SEND_WINDOW
    clock.shift(pins.SEND_INTERVAL)
    third = pins.issue_pin(session=session, email=email, purpose="signup")
    assert [row.consumed_at for row in rows(session, email)] == [datetime.now(UTC), None]
    for replaced in {first, second} - {third}:
        with pytest.raises(ForbiddenError):
            pins.consume_pin(session=session, email=email, purpose="signup", pin=replaced)
    pins.consume_pin(session=session, email=email, purpose="signup", pin=third)


def test_resends_wait_the_interval_then_the_hourly_window(
    session: Session, clock: time_machine.Traveller
) -> None:
    email = new_email()
    pins.issue_pin(session=session, email=email, purpose="signup")
    clock.shift(timedelta(seconds=20))
    with pytest.raises(RateLimitedError) as too_soon:
        pins.issue_pin(session=session, email=email, purpose="signup")
    assert too_soon.value.headers == {"Retry-After": "40"}

    for _ in range(pins.SENDS_PER_WINDOW - 1):
        clock.shift(pins.SEND_INTERVAL)
        pins.issue_pin(session=session, email=email, purpose="signup")
    clock.shift(pins.SEND_INTERVAL)
    with pytest.raises(RateLimitedError) as hourly:
        pins.issue_pin(session=session, email=email, purpose="signup")
    # The first send (at T0 + 0) frees its slot an hour after it was made.
    elapsed = timedelta(seconds=20) + pins.SEND_INTERVAL * pins.SENDS_PER_WINDOW
    assert hourly.value.extra == {"retry_after": (pins.SEND_WINDOW - elapsed).seconds}
    assert "5 PINs an hour" in hourly.value.detail
    # The other purpose has its own allowance.
    pins.issue_pin(session=session, email=email, purpose="password_reset")


def test_discarding_an_addresss_pins_leaves_other_addresses_alone(session: Session) -> None:
    email, other = new_email(), new_email()
    for address in (email, other):
        pins.issue_pin(session=session, email=address, purpose="signup")
        pins.issue_pin(session=session, email=address, purpose="password_reset")
    pins.discard_pins(session=session, email=email)
    assert count(session, EmailVerification, EmailVerification.email == email) == 0
    assert count(session, EmailVerification, EmailVerification.email == other) == 2


# --- daily guessing budget and the overall e-mail ceiling (issue 10) -------------------------


def guess_wrong(session: Session, email: str, pin: str) -> None:
    wrong = f"{(int(pin) + 1) % 10**6:06d}"
    with pytest.raises(ForbiddenError):
        pins.consume_pin(session=session, email=email, purpose="password_reset", pin=wrong)


def test_wrong_pins_have_a_daily_budget_per_address_and_purpose(
    session: Session, clock: time_machine.Traveller, override_settings
) -> None:
    """Five wrong tries killed a PIN, but five new PINs an hour made ~600 guesses a day."""
    override_settings(PIN_WRONG_TRIES_PER_DAY="6")
    email = new_email()
    for minutes in (0, 20, 40):  # three PINs, two wrong guesses each: six in all
        clock.move_to(T0 + timedelta(minutes=minutes))
        pin = pins.issue_pin(session=session, email=email, purpose="password_reset")
        guess_wrong(session, email, pin)
        guess_wrong(session, email, pin)
    # Even the right PIN of a live one is refused now ...
    with pytest.raises(RateLimitedError) as confirming:
        pins.consume_pin(session=session, email=email, purpose="password_reset", pin=pin)
    assert confirming.value.code == "too_many_wrong_pins"
    # ... and no new one is sent: the first wrong guess (at T0) leaves the day at T0 + 24 h.
    clock.shift(timedelta(minutes=20))
    with pytest.raises(RateLimitedError) as asking:
        pins.issue_pin(session=session, email=email, purpose="password_reset")
    assert asking.value.code == "too_many_wrong_pins"
    assert asking.value.headers == {"Retry-After": str(23 * 3600)}
    assert "23 hours" in asking.value.detail
    # Another purpose, or another address, is not affected ...
    pins.issue_pin(session=session, email=email, purpose="signup")
    pins.issue_pin(session=session, email=new_email(), purpose="password_reset")
    # ... and once the day has passed, the address may try again.
    clock.move_to(T0 + timedelta(days=1, minutes=41))
    pin = pins.issue_pin(session=session, email=email, purpose="password_reset")
    pins.consume_pin(session=session, email=email, purpose="password_reset", pin=pin)


def test_pin_emails_have_an_overall_ceiling_per_hour(
    session: Session, clock: time_machine.Traveller, override_settings
) -> None:
    override_settings(PIN_EMAILS_PER_HOUR="3")
    for _ in range(3):
        pins.issue_pin(session=session, email=new_email(), purpose="signup")
        clock.shift(timedelta(minutes=10))
    with pytest.raises(RateLimitedError) as paused:
        pins.issue_pin(session=session, email=new_email(), purpose="password_reset")
    assert paused.value.code == "pin_emails_paused"
    assert paused.value.headers == {"Retry-After": str(30 * 60)}  # the first leaves at T0+1h
    clock.shift(timedelta(minutes=30))
    pins.issue_pin(session=session, email=new_email(), purpose="signup")
