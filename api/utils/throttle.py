"""One sliding-window throttle behind every rate limit (login failures, PIN e-mails,
diagnoses per day): at most `limit` entries in any `window`, each entry a timestamped row.

Hold the limit's advisory lock (api/utils/locks.py) from the check until the entry is
written, so concurrent requests cannot all pass the check.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import InstrumentedAttribute, Session


def wait_for_slot(
    session: Session,
    timestamp: InstrumentedAttribute[datetime],
    *scope: ColumnElement[bool],
    limit: int,
    window: timedelta,
    now: datetime,
) -> timedelta | None:
    """None while fewer than `limit` of the rows in `scope` are younger than `window`;
    otherwise the Retry-After: how long until the limit-th newest of them leaves the window
    and fewer than `limit` remain (with exactly `limit` in it, the oldest one)."""
    blocking = session.scalar(
        select(timestamp)
        .where(*scope, timestamp > now - window)
        .order_by(timestamp.desc())
        .offset(limit - 1)
        .limit(1)
    )
    return None if blocking is None else blocking + window - now
