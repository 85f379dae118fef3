"""Transaction-level advisory locks: serialise the requests that read a counter and then
write to it (PIN sends, login failures, diagnoses per day), so none can race past a cap."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock_for(session: Session, *keys: str) -> None:
    """Wait for, then hold until the transaction ends, the lock named by `keys`."""
    session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), {"key": "\n".join(keys)}
    )
