"""One sliding-window throttle behind every rate limit (login failures, PIN e-mails,
diagnoses and attachment bytes per day): at most `limit` entries (or a `limit` of their
summed weights) in any `window`, each entry a timestamped row.

Serialise the check and the write of the entry (the limit's advisory lock from
api/utils/locks.py, or the one running diagnosis a user may have), so concurrent requests
cannot all pass the check.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session


@dataclass(frozen=True)
class Slot:
    """One sliding-window limit: the rows of `scope`, timestamped by `timestamp`, counted (or
    their `weight` summed) over `window`, against `limit` (see `wait_for_slot`)."""

    timestamp: InstrumentedAttribute[datetime]
    scope: tuple[ColumnElement[bool], ...]
    limit: int
    window: timedelta
    weight: InstrumentedAttribute[int] | None = None
    need: int = 1

    def blocking(self, now: datetime) -> Select[datetime]:
        """The row whose leaving the window frees the slot; none while it is free."""
        timestamp, window = self.timestamp, self.window
        if self.weight is None:
            return (
                select(timestamp)
                .where(*self.scope, timestamp > now - window)
                .order_by(timestamp.desc())
                .offset(self.limit - 1)
                .limit(1)
            )
        # Newest first, each row with the weight of itself and every newer row: the newest
        # row past `limit - need` must leave, and every older one with it.
        in_window = select(
            timestamp.label("at"),
            func.sum(self.weight).over(order_by=timestamp.desc(), rows=(None, 0)).label("newer"),
        ).where(*self.scope, timestamp > now - window)
        rows = in_window.subquery()
        return (
            select(rows.c.at)
            .where(rows.c.newer > self.limit - self.need)
            .order_by(rows.c.at.desc())
            .limit(1)
        )

    def wait(self, blocking: datetime | None, now: datetime) -> timedelta | None:
        return None if blocking is None else blocking + self.window - now


def wait_for_slot(
    session: Session,
    timestamp: InstrumentedAttribute[datetime],
    *scope: ColumnElement[bool],
    limit: int,
    window: timedelta,
    now: datetime,
    weight: InstrumentedAttribute[int] | None = None,
    need: int = 1,
) -> timedelta | None:
    """None while fewer than `limit` of the rows in `scope` are younger than `window`;
    otherwise the Retry-After: how long until the limit-th newest of them leaves the window
    and fewer than `limit` remain (with exactly `limit` in it, the oldest one).

    With a `weight` column the rows' weights are summed instead of counted: None while that
    sum plus `need` stays within `limit`; otherwise how long until enough of the oldest rows
    have left the window for `need` to fit (`need` itself must not exceed `limit`)."""
    slot = Slot(timestamp, scope, limit, window, weight, need)
    return slot.wait(session.scalar(slot.blocking(now)), now)


def waits_for_slots(session: Session, *slots: Slot, now: datetime) -> list[timedelta | None]:
    """Each slot's wait, as `wait_for_slot` gives it, read in one statement."""
    row = session.execute(select(*(slot.blocking(now).scalar_subquery() for slot in slots))).one()
    return [slot.wait(blocking, now) for slot, blocking in zip(slots, row, strict=True)]
