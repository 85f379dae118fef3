"""Transaction-level advisory locks (the only kind that works through a transaction pooler
such as PgBouncer): serialise the requests that read a counter and then write to it (PIN
sends, login failures), so none can race past a cap."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def lock_for(session: Session, *keys: str) -> None:
    """Wait for, then hold until the transaction ends, the lock named by `keys`."""
    session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"), _named(keys))


def _named(keys: tuple[str, ...]) -> dict[str, Any]:
    return {"key": "\n".join(keys)}
