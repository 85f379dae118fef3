"""A user's diagnosis allowances as the app shows them (GET /api/me/usage, and the RateLimit
fields of diagnosis responses): what the usage ledger (`diagnosis_usage`,
api/services/diagnose.py) counts against DIAGNOSES_PER_DAY and ATTACHMENT_BYTES_PER_DAY over
the rolling 24 hours, read in one statement.

The window slides: nothing resets at midnight. Each turn counts for 24 hours from when it was
asked, so an allowance grows back one turn (or one turn's bytes) at a time, first when the
oldest turn counted leaves the window (`resets_at`); until then, what is left can only
shrink.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from api.models import DiagnosisUsage, User, utcnow
from api.settings import get_settings
from api.utils.ratelimit import Policy

WINDOW = timedelta(days=1)


@dataclass(frozen=True)
class Quota:
    """The user's allowances at `at` (a running turn counts: it is charged at once)."""

    at: datetime
    diagnoses_today: int
    diagnoses_per_day: int
    resets_at: datetime | None  # when the oldest diagnosis counted leaves the window
    attachment_bytes_today: int
    attachment_bytes_per_day: int
    attachment_bytes_resets_at: datetime | None  # likewise, of those that stored bytes
    diagnosis_running: bool
    window_seconds: int = int(WINDOW.total_seconds())

    @property
    def diagnoses_remaining(self) -> int:
        return max(0, self.diagnoses_per_day - self.diagnoses_today)

    @property
    def attachment_bytes_remaining(self) -> int:
        return max(0, self.attachment_bytes_per_day - self.attachment_bytes_today)


def read_quota(
    *, session: Session, user_id: uuid.UUID, now: datetime, excluding: uuid.UUID | None = None
) -> Quota:
    """The user's allowances now; `excluding` leaves out a turn being refused."""
    settings = get_settings()
    counted = (
        DiagnosisUsage.user_id == user_id,
        DiagnosisUsage.created_at > now - WINDOW,
        # A reservation left by a process that died counts no longer (the next turn drops it).
        or_(DiagnosisUsage.pending_until.is_(None), DiagnosisUsage.pending_until > now),
        *([DiagnosisUsage.id != excluding] if excluding is not None else []),
    )
    turns, stored_bytes, oldest, oldest_with_bytes, running = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(DiagnosisUsage.attachment_bytes), 0),
            func.min(DiagnosisUsage.created_at),
            func.min(DiagnosisUsage.created_at).filter(DiagnosisUsage.attachment_bytes > 0),
            func.coalesce(func.bool_or(DiagnosisUsage.pending_until.is_not(None)), False),
        ).where(*counted)
    ).one()
    return Quota(
        at=now,
        diagnoses_today=turns,
        diagnoses_per_day=settings.diagnoses_per_day,
        resets_at=_leaves(oldest),
        attachment_bytes_today=int(stored_bytes),
        attachment_bytes_per_day=settings.attachment_bytes_per_day,
        attachment_bytes_resets_at=_leaves(oldest_with_bytes),
        diagnosis_running=bool(running),
    )


def usage(*, session: Session, user: User) -> Quota:
    """The user's allowances now (GET /api/me/usage)."""
    return read_quota(session=session, user_id=user.id, now=utcnow())


def policies(quota: Quota) -> list[Policy]:
    """The allowances as RateLimit policies (api/utils/ratelimit.py)."""
    return [
        Policy(
            "diagnoses",
            quota.diagnoses_per_day,
            WINDOW,
            quota.diagnoses_remaining,
            _until(quota.resets_at, quota.at),
        ),
        Policy(
            "attachment-bytes",
            quota.attachment_bytes_per_day,
            WINDOW,
            quota.attachment_bytes_remaining,
            _until(quota.attachment_bytes_resets_at, quota.at),
            unit="content-bytes",
        ),
    ]


def _leaves(oldest: datetime | None) -> datetime | None:
    return oldest + WINDOW if oldest is not None else None


def _until(moment: datetime | None, now: datetime) -> timedelta | None:
    return moment - now if moment is not None else None
