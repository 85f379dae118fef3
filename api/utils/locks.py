"""Transaction-level advisory locks: serialise the requests that read a counter and then
write to it (PIN sends, login failures, diagnoses per day), so none can race past a cap."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock_for(session: Session, *keys: str) -> None:
    """Wait for, then hold until the transaction ends, the lock named by `keys`."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), _named(keys))


def try_lock_for(session: Session, *keys: str) -> bool:
    """Take the lock named by `keys` (held until the transaction ends) only if it is free
    now: False when another transaction holds it, for work that must not queue up holding
    a pooled connection."""
    return bool(
        session.scalar(
            text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))"), _named(keys)
        )
    )


def _named(keys: tuple[str, ...]) -> dict[str, Any]:
    return {"key": "\n".join(keys)}
