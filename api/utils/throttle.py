"""One sliding-window throttle behind every rate limit (login failures, PIN e-mails,
diagnoses and attachment bytes per day): at most `limit` entries (or a `limit` of their
summed weights) in any `window`, each entry a timestamped row.

Serialise the check and the write of the entry (the limit's advisory lock from
api/utils/locks.py, or the one running diagnosis a user may have), so concurrent requests
cannot all pass the check.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session


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
    if weight is None:
        blocking = session.scalar(
            select(timestamp)
            .where(*scope, timestamp > now - window)
            .order_by(timestamp.desc())
            .offset(limit - 1)
            .limit(1)
        )
    else:
        # Newest first, each row with the weight of itself and every newer row: the newest
        # row past `limit - need` must leave, and every older one with it.
        in_window = select(
            timestamp.label("at"),
            func.sum(weight).over(order_by=timestamp.desc(), rows=(None, 0)).label("newer"),
        ).where(*scope, timestamp > now - window)
        rows = in_window.subquery()
        blocking = session.scalar(
            select(rows.c.at).where(rows.c.newer > limit - need).order_by(rows.c.at.desc()).limit(1)
        )
    return None if blocking is None else blocking + window - now
