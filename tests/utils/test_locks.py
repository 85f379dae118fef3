"""Transaction-level advisory locks: held until the transaction ends, then free."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from api.utils.locks import lock_for

HELD_BY_OTHERS = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
    " AND pid <> pg_backend_pid()"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def test_the_lock_is_held_until_the_transaction_ends(committed: Session):
    from api import db

    with Session(db.get_engine()) as holder, Session(db.get_engine()) as observer:
        lock_for(holder, "login", "someone@example.com")
        assert observer.execute(HELD_BY_OTHERS).scalar_one() == 1
        observer.rollback()
        holder.commit()
        assert observer.execute(HELD_BY_OTHERS).scalar_one() == 0
