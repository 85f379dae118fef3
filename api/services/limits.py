"""Abuse limits counted in `rate_limit_events` through the one throttle
(api/utils/throttle.py): wrong PINs per e-mail address and purpose per day, and per client
address per hour the PIN e-mails asked for and the failed logins and PIN confirmations.

Which client: `api.utils.http.client_address` (the hop Azure's front end adds to
X-Forwarded-For). Per-client counts take no lock: requests from one address in flight at
the same moment may pass together, a few over the limit, which these ceilings (meant for
floods, not for exact quotas) can afford; the per-address PIN limits stay exact (they run
under the PIN row's or the address's lock).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from api.errors import RateLimitedError
from api.models import RateLimitEvent
from api.settings import Settings, get_settings
from api.utils.throttle import wait_for_slot
from api.utils.waits import in_words


@dataclass(frozen=True)
class EventLimit:
    """At most `allowed` events of `kind` per subject in any `window`."""

    kind: str
    window: timedelta
    allowed: Callable[[Settings], int]
    refusal: str  # the 429's detail; {wait} is the wait in words
    code: str


WRONG_PINS = EventLimit(
    "wrong_pin",
    timedelta(days=1),
    lambda settings: settings.pin_wrong_tries_per_day,
    "Too many wrong PINs for this address today; try again in {wait}",
    "too_many_wrong_pins",
)
CLIENT_PIN_REQUESTS = EventLimit(
    "pin_request",
    timedelta(hours=1),
    lambda settings: settings.client_pin_requests_per_hour,
    "Too many PIN e-mails asked for from your network; try again in {wait}",
    "too_many_pin_requests",
)
CLIENT_AUTH_FAILURES = EventLimit(
    "auth_failure",
    timedelta(hours=1),
    lambda settings: settings.client_auth_failures_per_hour,
    "Too many failed attempts from your network; try again in {wait}",
    "too_many_failed_attempts",
)


def pin_subject(email: str, purpose: str) -> str:
    return f"{purpose}:{email}"


def check(session: Session, limit: EventLimit, subject: str, *, now: datetime) -> None:
    """429 with Retry-After while `subject` has used up `limit`."""
    wait = wait_for_slot(
        session,
        RateLimitEvent.created_at,
        RateLimitEvent.kind == limit.kind,
        RateLimitEvent.subject == subject,
        limit=limit.allowed(get_settings()),
        window=limit.window,
        now=now,
    )
    if wait is not None:
        raise RateLimitedError(
            limit.refusal.format(wait=in_words(wait)), retry_after=wait, code=limit.code
        )


def record(session: Session, limit: EventLimit, subject: str, *, now: datetime) -> None:
    """Count one event for `subject`; the kind's events that left the window go (every
    subject's, so subjects never seen again leave no rows behind)."""
    session.execute(
        delete(RateLimitEvent).where(
            RateLimitEvent.kind == limit.kind, RateLimitEvent.created_at <= now - limit.window
        )
    )
    session.add(RateLimitEvent(kind=limit.kind, subject=subject, created_at=now))
    session.flush()
