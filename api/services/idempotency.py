"""Safe retries with `Idempotency-Key` (IETF httpapi draft "The Idempotency-Key HTTP Header
Field", draft-ietf-httpapi-idempotency-key-header-07): a client that lost the response to a
POST sends it again with the same key and gets the first response back instead of a second
vehicle, mod or paid diagnosis.

A key belongs to one user and lives KEY_LIFETIME (24 hours) from its first use:
- `claim` at the start of the request: the key is new (or expired, or left by a request
  that died) → this request runs and owns it until `locked_until`; the key answered before
  with the same request → that response, to replay; with another request (a different
  fingerprint: method, path, body) → 422 `idempotency_key_reused`; still running → 409
  `request_in_progress` with Retry-After.
- `complete` in the same transaction that writes the request's effects, so the effects and
  the response to replay are committed together or not at all.
- `release` when the request fails: only successes are kept. Every failure here leaves
  nothing behind (its unit of work rolls back; a diagnosis turn's reservation is released),
  so running it again cannot double anything, and a retry after a 502, 503 or 504 (or after
  a 429 once its wait is over) gets a real answer instead of the same error for 24 hours.
  That is the draft's resource-owner choice, and Stripe's "results are only saved if an API
  endpoint begins executing" taken one step further: Stripe also saves 500s because its
  failures can leave partial effects; ours cannot.
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, TypeVar

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from api.errors import AppError, ConflictError
from api.models import IdempotencyKey
from api.utils.waits import whole_seconds

T = TypeVar("T")
U = TypeVar("U")

KEY_LIFETIME = timedelta(hours=24)
IN_PROGRESS_RETRY = timedelta(seconds=5)  # a diagnosis takes seconds; the others, less
SWEEP_BATCH = 100  # expired keys removed per claim: more than any claim adds (one)


class IdempotencyKeyReused(AppError):
    status, title, code = 422, "Unprocessable Content", "idempotency_key_reused"


@dataclass(frozen=True)
class Key:
    """One user's key for one request: `fingerprint` is the SHA-256 of what the request
    is (method, path and body), so a reused key is told apart from a retry."""

    user_id: uuid.UUID
    value: str
    fingerprint: bytes


@dataclass(frozen=True)
class StoredResponse:
    """A response as it was first sent, to send again."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """A key this request owns until it completes or releases it."""

    id: uuid.UUID
    key: Key


@dataclass(frozen=True)
class Idempotency(Generic[T]):
    """What a slow handler's service needs to keep a key across its own short transactions
    (api/endpoints.py hands it over): the key, and how a result of type T is sent."""

    key: Key
    render: Callable[[T], StoredResponse]

    def before(self, shape: Callable[[U], T]) -> Idempotency[U]:
        """The same key for a service whose result the handler shapes (with `shape`)
        before it is sent."""
        return Idempotency(self.key, lambda result: self.render(shape(result)))


def claim(
    *, session: Session, key: Key, now: datetime, running_until: datetime
) -> Claim | StoredResponse:
    """Own `key` for this request (a `Claim`, until `running_until` should the request
    die), or the response to replay. 422 for a key used with another request, 409 while
    the request that owns it runs.

    One upsert decides: a new key is inserted; an expired one, or one whose request died
    (`locked_until` passed), starts anew under a new id (so the dead request can no longer
    complete it). Any other key it leaves as it is but locks (ON CONFLICT DO UPDATE locks
    the row even when its WHERE is false), so the read after it finds that very row. A
    duplicate of a request whose transaction has not committed yet waits at the unique
    index and then sees what it committed."""
    _sweep(session, now)
    attempt = insert(IdempotencyKey).values(
        id=uuid.uuid4(),
        user_id=key.user_id,
        key=key.value,
        fingerprint=key.fingerprint,
        created_at=now,
        expires_at=now + KEY_LIFETIME,
        locked_until=running_until,
    )
    anew = ("id", "fingerprint", "created_at", "expires_at", "locked_until")
    claim_id = session.scalar(
        attempt.on_conflict_do_update(
            constraint="uq_idempotency_keys_user_key",
            set_={column: attempt.excluded[column] for column in anew}
            | {"response_status": None, "response_headers": None, "response_body": None},
            where=(IdempotencyKey.expires_at <= now) | (IdempotencyKey.locked_until <= now),
        ).returning(IdempotencyKey.id)
    )
    if claim_id is not None:
        return Claim(claim_id, key)
    found = session.scalars(
        select(IdempotencyKey).where(
            IdempotencyKey.user_id == key.user_id, IdempotencyKey.key == key.value
        )
    ).one()
    if not hmac.compare_digest(found.fingerprint, key.fingerprint):
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with another request (method, path or body); "
            "use a new key for a new request",
            extra={"field": "Idempotency-Key"},
        )
    if found.response_status is not None:
        return StoredResponse(
            found.response_status, found.response_headers or {}, found.response_body or b""
        )
    running_for = (found.locked_until or now) - now  # set while running (a table check)
    seconds = whole_seconds(min(running_for, IN_PROGRESS_RETRY))
    raise ConflictError(
        "The first request with this Idempotency-Key is still running; retry shortly",
        code="request_in_progress",
        headers={"Retry-After": str(seconds)},
        extra={"retry_after": seconds},
    )


def complete(*, session: Session, claim: Claim, response: StoredResponse) -> None:
    """Keep the response for replays (in the transaction that writes the request's effects)."""
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim.id, IdempotencyKey.locked_until.is_not(None))
        .values(
            locked_until=None,
            response_status=response.status,
            response_headers=response.headers,
            response_body=response.body,
        )
    )


def release(*, session: Session, claim: Claim) -> None:
    """Forget a key whose request failed (unless it had answered meanwhile)."""
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.id == claim.id, IdempotencyKey.locked_until.is_not(None)
        )
    )


def _sweep(session: Session, now: datetime) -> None:
    """Delete a batch of expired keys (anyone's): each claim adds at most one row and removes
    up to SWEEP_BATCH, so the table holds little more than the last 24 hours' keys."""
    expired = (
        select(IdempotencyKey.id)
        .where(IdempotencyKey.expires_at <= now)
        .limit(SWEEP_BATCH)
        .with_for_update(skip_locked=True)
    )
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(expired.scalar_subquery())))
