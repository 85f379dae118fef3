"""E-mailed PINs: issued from a CSPRNG, stored as a keyed HMAC, bound to an e-mail and a
purpose, single use, at most MAX_WRONG_TRIES wrong tries, and throttled per e-mail+purpose.
Guessing is bounded per day too: PIN_WRONG_TRIES_PER_DAY wrong PINs per address and
purpose (then 429 for both asking and confirming until the day's oldest leaves the window),
and PIN_EMAILS_PER_HOUR PIN e-mails are sent in all, whatever the address.

Why an HMAC rather than a salted slow hash: a 6-digit PIN has only a million values, so any
unkeyed hash, however slow, falls to brute force once the table leaks. The HMAC's key is
derived from JWT_SECRET, which never sits in the database, so a leaked table reveals
nothing, and checking a PIN stays cheap. The e-mail and purpose are part of the MAC, so a
PIN is worthless for another address or purpose even before the row lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from api.errors import ForbiddenError, RateLimitedError
from api.models import EmailVerification, utcnow
from api.services import limits
from api.settings import get_settings
from api.utils.locks import lock_for
from api.utils.throttle import wait_for_slot
from api.utils.waits import in_words, whole_minutes, whole_seconds

Purpose = Literal["signup", "password_reset"]

PIN_DIGITS = 6
MAX_WRONG_TRIES = 5
SEND_INTERVAL = timedelta(seconds=60)
SEND_WINDOW = timedelta(hours=1)
SENDS_PER_WINDOW = 5
ALL_SENDS_WINDOW = timedelta(hours=1)  # PIN_EMAILS_PER_HOUR

INVALID_PIN = "That PIN is wrong, expired or already used; check it or request a new one"
DEAD_PIN = "Too many wrong tries: this PIN no longer works; request a new one"


def _pin_key() -> bytes:
    secret = get_settings().jwt_secret.encode()
    return hmac.new(secret, b"axly email pin v1", hashlib.sha256).digest()


def pin_hmac(pin: str, *, email: str, purpose: Purpose) -> str:
    message = f"{purpose}\n{email}\n{pin}".encode()
    return hmac.new(_pin_key(), message, hashlib.sha256).hexdigest()


def issue_pin(*, session: Session, email: str, purpose: Purpose) -> str:
    """Store a new PIN for `email` + `purpose` (replacing any earlier one) and return it in
    plain text for the e-mail; 429 when one was sent too recently or too often."""
    now = utcnow()
    lock_for(session, "pin", purpose, email)
    _check_send_rate(session, email=email, purpose=purpose, now=now)
    limits.check(session, limits.WRONG_PINS, limits.pin_subject(email, purpose), now=now)
    mine = (EmailVerification.email == email) & (EmailVerification.purpose == purpose)
    session.execute(
        delete(EmailVerification).where(mine, EmailVerification.created_at <= now - SEND_WINDOW)
    )
    session.execute(
        update(EmailVerification)
        .where(mine, EmailVerification.consumed_at.is_(None))
        .values(consumed_at=now)
    )
    pin = f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"
    session.add(
        EmailVerification(
            email=email,
            purpose=purpose,
            pin_hmac=pin_hmac(pin, email=email, purpose=purpose),
            expires_at=now + timedelta(minutes=get_settings().pin_exp_minutes),
            created_at=now,
        )
    )
    session.flush()
    return pin


def _check_send_rate(session: Session, *, email: str, purpose: Purpose, now: datetime) -> None:
    """PIN_EMAILS_PER_HOUR in all; to one address and purpose SENDS_PER_WINDOW an hour, and
    none within SEND_INTERVAL of the last one. The overall count takes no lock (it would
    queue every sign-up behind one): concurrent requests may pass it together."""
    at = EmailVerification.created_at
    ceiling = get_settings().pin_emails_per_hour
    wait = wait_for_slot(session, at, limit=ceiling, window=ALL_SENDS_WINDOW, now=now)
    if wait is not None:
        raise RateLimitedError(
            f"We are sending too many PIN e-mails right now; try again in {in_words(wait)}",
            retry_after=wait,
            code="pin_emails_paused",
        )
    sent = (EmailVerification.email == email, EmailVerification.purpose == purpose)
    wait = wait_for_slot(session, at, *sent, limit=SENDS_PER_WINDOW, window=SEND_WINDOW, now=now)
    if wait is not None:
        raise RateLimitedError(
            f"At most {SENDS_PER_WINDOW} PINs an hour are sent to one address; "
            f"try again in {whole_minutes(wait)} minutes",
            retry_after=wait,
        )
    wait = wait_for_slot(session, at, *sent, limit=1, window=SEND_INTERVAL, now=now)
    if wait is not None:
        raise RateLimitedError(
            f"A PIN was sent moments ago; wait {whole_seconds(wait)} seconds before asking again",
            retry_after=wait,
        )


def consume_pin(*, session: Session, email: str, purpose: Purpose, pin: str) -> None:
    """Use up the current PIN for `email` + `purpose`, or fail with 403. A wrong PIN counts
    a try (kept even though the request fails); the MAX_WRONG_TRIES-th kills the PIN."""
    now = utcnow()
    current = session.scalars(
        select(EmailVerification)
        .where(
            EmailVerification.email == email,
            EmailVerification.purpose == purpose,
            EmailVerification.consumed_at.is_(None),
            EmailVerification.expires_at > now,
        )
        .order_by(EmailVerification.created_at.desc())
        .limit(1)
        .with_for_update()
    ).first()
    if current is None:
        raise invalid_pin_error()
    # Checked under the PIN's row lock, so concurrent guesses cannot all pass the budget.
    subject = limits.pin_subject(email, purpose)
    limits.check(session, limits.WRONG_PINS, subject, now=now)
    expected = pin_hmac(pin, email=email, purpose=purpose)
    if not hmac.compare_digest(current.pin_hmac, expected):
        limits.record(session, limits.WRONG_PINS, subject, now=now)
        current.attempts += 1
        dead = current.attempts >= MAX_WRONG_TRIES
        if dead:
            current.consumed_at = now
        raise ForbiddenError(
            DEAD_PIN if dead else INVALID_PIN, code="invalid_pin", keep_changes=True
        )
    current.consumed_at = now


def invalid_pin_error() -> ForbiddenError:
    # 403 as Supabase Auth answers a wrong or expired one-time code. keep_changes: what the
    # request counted (the client's failures) outlives the refusal.
    return ForbiddenError(INVALID_PIN, code="invalid_pin", keep_changes=True)


def discard_pins(*, session: Session, email: str) -> None:
    session.execute(delete(EmailVerification).where(EmailVerification.email == email))
