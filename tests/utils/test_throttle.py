"""The one sliding-window throttle, on real rows: it counts only the scope's rows inside the
window, and its wait ends exactly when a slot frees up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from api.models import LoginFailure
from api.utils.throttle import Slot, wait_for_slot, waits_for_slots

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)


def failures(session: Session, email: str, *minutes_ago: float) -> None:
    session.add_all(
        LoginFailure(email=email, created_at=NOW - timedelta(minutes=m)) for m in minutes_ago
    )
    session.flush()


def wait(session: Session, email: str, limit: int) -> timedelta | None:
    return wait_for_slot(
        session,
        LoginFailure.created_at,
        LoginFailure.email == email,
        limit=limit,
        window=WINDOW,
        now=NOW,
    )


def test_under_the_limit_there_is_no_wait(session: Session) -> None:
    failures(session, "a@example.com", 1, 2)
    assert wait(session, "a@example.com", limit=3) is None


def test_at_the_limit_the_wait_ends_when_the_oldest_entry_leaves_the_window(
    session: Session,
) -> None:
    failures(session, "a@example.com", 10, 4, 1)
    assert wait(session, "a@example.com", limit=3) == WINDOW - timedelta(minutes=10)


def test_entries_outside_the_window_or_the_scope_do_not_count(session: Session) -> None:
    failures(session, "a@example.com", 15, 20, 1)  # 15 minutes ago has just left the window
    failures(session, "b@example.com", 1, 2, 3)
    assert wait(session, "a@example.com", limit=2) is None


def test_over_the_limit_the_wait_lasts_until_the_count_is_under_it(session: Session) -> None:
    """With more entries than the limit (a lowered limit), one leaving is not enough."""
    failures(session, "a@example.com", 12, 9, 6, 3)
    assert wait(session, "a@example.com", limit=2) == WINDOW - timedelta(minutes=6)


def test_several_slots_read_at_once_wait_as_each_alone(session: Session) -> None:
    failures(session, "a@example.com", 10, 4, 1)
    failures(session, "b@example.com", 7)
    limits = [("a@example.com", 3), ("a@example.com", 4), ("b@example.com", 1)]
    slots = [
        Slot(LoginFailure.created_at, (LoginFailure.email == email,), limit, WINDOW)
        for email, limit in limits
    ]
    alone = [wait(session, email, limit) for email, limit in limits]
    assert alone == [WINDOW - timedelta(minutes=10), None, WINDOW - timedelta(minutes=7)]
    assert waits_for_slots(session, *slots, now=NOW) == alone
