"""Accounts and sessions: sign-up by e-mailed PIN, login with throttling, access tokens,
rotating refresh tokens, password reset and change, logout and account deletion.

A session is a family of refresh tokens started by one login; each refresh rotates the
token. An access token names its session (`sid`) and carries the user's token version
(password changes, resets and "logout everywhere" bump it): it works only while both hold,
checked on every request in the statement that loads the user, so logging out, a family
revoked for reuse, a password change or the account's deletion end it at once, not when it
expires.

Rotation and reuse: presenting a refresh token that was already rotated means it was copied,
and revokes its whole family — unless it comes within REFRESH_REUSE_INTERVAL_S of its
rotation, which is an app refreshing from two screens at once (or retrying after a lost
response): that request gets a sibling in the same family, a fresh token pair for the same
session. A sibling rather than the successor itself: only tokens' digests are stored, so the
successor cannot be sent twice without keeping a usable token in the database. Siblings
rotate and die with their family like any other token.

Lock order: everything that writes a user's rows locks the user's row first (as the
deletion's cascade does), so a login or refresh racing the account's deletion waits for it
and finds the account gone instead of deadlocking with it.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    bindparam,
    delete,
    exists,
    select,
    update,
)
from sqlalchemy.orm import Session
from typing_extensions import TypeVar

from api.db import Read, Reader, UnitOfWork
from api.errors import AuthenticationError, ConflictError, ForbiddenError, RateLimitedError
from api.models import LoginFailure, RefreshToken, User, utcnow
from api.services.tokens import access_claims, decode_token, encode_token, token_digest
from api.settings import get_settings

if TYPE_CHECKING:
    from api.services.pins import Purpose

# Passwords, PINs, e-mail and throttles (api.utils.hashing, api.services.pins, .limits,
# .email) are imported by the functions that use them: every authenticated request imports
# this module for `authenticate`, and a cold process's first one need not compile them.

LOGIN_FAILURE_LIMIT = 10
LOGIN_FAILURE_WINDOW = timedelta(minutes=15)
BAD_CREDENTIALS = "Wrong e-mail or password"
ACCOUNT_GONE = "The account no longer exists"
SESSION_ENDED = "This session has ended; log in again"


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    refresh_token: str
    expires_in: int
    user: User
    token_type: str = "bearer"  # noqa: S105 - the OAuth 2 token type, not a secret


# --- tokens --------------------------------------------------------------------------------


def issue_access_token(user: User, session_id: uuid.UUID) -> str:
    """An access token for the session (refresh-token family) `session_id`, its `sid`: it
    works as long as that session does."""
    lifetime = timedelta(minutes=get_settings().access_token_minutes)
    token, _ = encode_token(
        user.id, "access", lifetime, version=user.token_version, sid=str(session_id)
    )
    return token


@dataclass(frozen=True)
class Account:
    """A user as a read request sees it (`authenticate_read`): the columns it may send, as
    read, not an ORM object — it changes nothing."""

    id: uuid.UUID
    email: str
    created_at: datetime
    token_version: int


UserT = TypeVar("UserT", User, Account, default=User)


@dataclass(frozen=True)
class Caller(Generic[UserT]):
    """Who an access token speaks for, and the session (refresh family) it came with."""

    user: UserT
    session_id: uuid.UUID


@functools.cache
def _caller_query(hold: bool) -> Select[User, bool]:
    """`authenticate`'s statement, built once per process with its values bound at each
    execution: building it anew cost more Python than running it, on every request."""
    query = select(User, _live(bindparam("session_id"), now=bindparam("now"))).where(
        User.id == bindparam("user_id")
    )
    return query.with_for_update(read=True, key_share=True, of=User) if hold else query


@functools.cache
def _account_query() -> Read:
    """`authenticate_read`'s statement: `_caller_query`'s, reading an `Account`."""
    live = _live(bindparam("session_id"), now=bindparam("now")).label("session_alive")
    columns = [User.__table__.columns[name] for name in Account.__dataclass_fields__]
    return Read.of(select(*columns, live).where(User.id == bindparam("user_id")))


def _live(
    family_id: uuid.UUID | BindParameter[Any], *, now: datetime | BindParameter[Any]
) -> ColumnElement[bool]:
    """Whether the session `family_id` still has a refresh token that can be used."""
    return exists().where(
        RefreshToken.family_id == family_id,
        RefreshToken.revoked_at.is_(None),
        RefreshToken.expires_at > now,
    )


def _check_session(version: int, session_alive: bool, token_version: int) -> None:
    """401 unless the account's token `version` is the one the token (or the request) was
    issued under and its session is alive."""
    if version != token_version or not session_alive:
        raise AuthenticationError(SESSION_ENDED, code="session_ended")


def authenticate(*, session: Session, token: str, hold: bool = False) -> Caller:
    """The caller an access token stands for; 401 for any token not currently valid: the
    user and whether its session is still alive are read in one statement. `hold` (for a
    request that writes): the same statement locks the account's row as `hold_account`
    does, so the request and the account's deletion take turns — it never writes for an
    account deleted meanwhile, and waits for a deletion in progress to find it gone."""
    claims = access_claims(token)
    values = {"user_id": claims["sub"], "session_id": claims["sid"], "now": utcnow()}
    row = session.execute(_caller_query(hold), values).first()
    if row is None:  # the token is ours (its signature says so): its account was deleted
        raise AuthenticationError(ACCOUNT_GONE, code="account_deleted")
    user, session_alive = row
    _check_session(user.token_version, session_alive, claims["ver"])
    return Caller(user=user, session_id=claims["sid"])


def authenticate_read(*, reader: Reader, token: str) -> Caller[Account]:
    """`authenticate` for a read (`api.db.read_scope`): the same statement and checks, the
    account as read."""
    claims = access_claims(token)
    values = {"user_id": claims["sub"], "session_id": claims["sid"], "now": utcnow()}
    rows = reader.rows(_account_query(), values)
    if not rows:
        raise AuthenticationError(ACCOUNT_GONE, code="account_deleted")
    *columns, session_alive = rows[0]
    account = Account(*columns)
    _check_session(account.token_version, session_alive, claims["ver"])
    return Caller(user=account, session_id=claims["sid"])


def account_exists(*, session: Session, user_id: uuid.UUID) -> bool:
    """Does the account still exist? Waits for a deletion of it in progress to end (the
    row lock), so the answer is final."""
    locked = session.scalar(
        select(User.id).where(User.id == user_id).with_for_update(read=True, key_share=True)
    )
    return locked is not None


def hold_account(*, session: Session, user_id: uuid.UUID) -> None:
    """Lock the account's row (FOR KEY SHARE) until the transaction ends, before writing rows
    that belong to it: deleting the account waits meanwhile, instead of breaking the write
    (or deadlocking with it); 401 `account_deleted` when it is already gone (or went while
    we waited)."""
    if not account_exists(session=session, user_id=user_id):
        raise AuthenticationError(ACCOUNT_GONE, code="account_deleted")


def hold_session(*, session: Session, caller: Caller) -> None:
    """`hold_account`, and 401 `session_ended` when the caller's session has ended since the
    request was authenticated (logout, logout everywhere, a password change or reset): for a
    request that ran long (a diagnosis turn) before it writes."""
    row = session.execute(
        select(User.token_version, _live(caller.session_id, now=utcnow()))
        .where(User.id == caller.user.id)
        .with_for_update(read=True, key_share=True, of=User)
    ).first()
    if row is None:
        raise AuthenticationError(ACCOUNT_GONE, code="account_deleted")
    token_version, session_alive = row
    _check_session(token_version, session_alive, caller.user.token_version)


def start_session(*, session: Session, user: User) -> IssuedTokens:
    """A new session (refresh-token family) for `user`, its first token pair. Only for a
    caller that has already proven who the user is (login, sign-up, tests, benchmarks)."""
    bundle, _ = _start_session(session, user)
    return bundle


def _start_session(
    session: Session, user: User, family_id: uuid.UUID | None = None
) -> tuple[IssuedTokens, RefreshToken]:
    """Issue an access token and a new refresh token (in `family_id`, else a new family)."""
    settings = get_settings()
    now = utcnow()
    hold_account(session=session, user_id=user.id)
    session.execute(
        delete(RefreshToken).where(RefreshToken.user_id == user.id, RefreshToken.expires_at < now)
    )
    token_id = uuid.uuid4()
    refresh_token, expires_at = encode_token(
        user.id,
        "refresh",
        timedelta(days=settings.refresh_token_days),
        version=user.token_version,
        jti=str(token_id),
    )
    stored = RefreshToken(
        id=token_id,
        user_id=user.id,
        family_id=family_id or uuid.uuid4(),
        token_hash=token_digest(refresh_token),
        expires_at=expires_at,
        created_at=now,
    )
    session.add(stored)
    session.flush()
    bundle = IssuedTokens(
        access_token=issue_access_token(user, stored.family_id),
        refresh_token=refresh_token,
        expires_in=settings.access_token_minutes * 60,
        user=user,
    )
    return bundle, stored


def _end_every_session(session: Session, user: User) -> None:
    user.token_version += 1
    _revoke(session, RefreshToken.user_id == user.id)


def _revoke(session: Session, which: ColumnElement[bool]) -> None:
    session.execute(
        update(RefreshToken)
        .where(which, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def refresh_session(*, session: Session, refresh_token: str) -> IssuedTokens:
    """Rotate a refresh token. Presenting one that was already rotated means it was copied:
    the whole family is revoked, for the thief and the victim alike — unless its rotation is
    under REFRESH_REUSE_INTERVAL_S old, which gets a sibling token pair (see the module's
    doc). Concurrent refreshes with one token queue on its row lock."""
    claims = decode_token(refresh_token, "refresh")
    hold_account(session=session, user_id=claims["sub"])
    stored = session.scalars(
        select(RefreshToken)
        .where(RefreshToken.token_hash == token_digest(refresh_token))
        .with_for_update()
    ).first()
    if stored is None or stored.user_id != claims["sub"]:
        raise AuthenticationError(SESSION_ENDED, code="session_ended")
    now = utcnow()
    if stored.revoked_at is not None and stored.replaced_by_id is None:
        raise AuthenticationError(SESSION_ENDED, code="session_ended")  # logged out
    if stored.revoked_at is not None and not _reused_in_time(session, stored, now=now):
        _revoke(session, RefreshToken.family_id == stored.family_id)
        raise AuthenticationError(
            "This refresh token was already used; every session it started has been "
            "ended. Log in again",
            code="refresh_token_reused",
            keep_changes=True,
        )
    user = session.get(User, stored.user_id)
    if user is None or claims["ver"] != user.token_version:
        raise AuthenticationError(SESSION_ENDED, code="session_ended")
    bundle, successor = _start_session(session, user, family_id=stored.family_id)
    if stored.revoked_at is None:
        stored.revoked_at = now
        stored.replaced_by_id = successor.id
    return bundle


def _reused_in_time(session: Session, stored: RefreshToken, *, now: datetime) -> bool:
    """Was `stored` rotated less than REFRESH_REUSE_INTERVAL_S ago, in a session that is
    still alive (not since logged out or revoked)?"""
    interval = timedelta(seconds=get_settings().refresh_reuse_interval_s)
    if stored.revoked_at is None or now - stored.revoked_at > interval:
        return False
    return bool(session.scalar(select(_live(stored.family_id, now=now))))


def logout(
    *,
    session: Session,
    caller: Caller,
    refresh_token: str | None,
    everywhere: bool,
) -> None:
    """End every session, or the one `refresh_token` belongs to (if it is the caller's), or
    else the caller's own. Logging out twice is not an error."""
    user = caller.user
    if everywhere:
        _end_every_session(session, user)
        return
    if refresh_token is not None:
        family = select(RefreshToken.family_id).where(
            RefreshToken.token_hash == token_digest(refresh_token),
            RefreshToken.user_id == user.id,
        )
        _revoke(session, RefreshToken.family_id.in_(family.scalar_subquery()))
        return
    _revoke(
        session, (RefreshToken.family_id == caller.session_id) & (RefreshToken.user_id == user.id)
    )


# --- passwords and throttling ----------------------------------------------------------------


def _begin_password_check(session: Session, email: str, *, now: datetime) -> None:
    """Under the e-mail's lock: 429 when its failure throttle is full (for unknown e-mails
    too, so a 429 says nothing about an account); else this attempt counts as a failure in
    advance, so attempts checked in parallel — after this transaction, as a login does —
    cannot all pass the throttle before any has failed. A right password removes it."""
    from api.utils.locks import lock_for
    from api.utils.throttle import wait_for_slot
    from api.utils.waits import whole_minutes

    lock_for(session, "login", email)
    wait = wait_for_slot(
        session,
        LoginFailure.created_at,
        LoginFailure.email == email,
        limit=LOGIN_FAILURE_LIMIT,
        window=LOGIN_FAILURE_WINDOW,
        now=now,
    )
    if wait is not None:
        raise RateLimitedError(
            "Too many wrong passwords for this account; "
            f"try again in {whole_minutes(wait)} minutes",
            retry_after=wait,
            code="too_many_login_failures",
        )
    # Every address's expired records go (not just this one's), so addresses that are never
    # tried again do not leave rows behind for ever.
    session.execute(
        delete(LoginFailure).where(LoginFailure.created_at <= now - LOGIN_FAILURE_WINDOW)
    )
    session.add(LoginFailure(email=email, created_at=now))
    session.flush()


def _forget_failures(session: Session, email: str) -> None:
    """A right password: the e-mail's failures go, this attempt's among them."""
    session.execute(delete(LoginFailure).where(LoginFailure.email == email))


def _check_password(session: Session, *, email: str, password: str, user: User | None) -> bool:
    """Verify a password under the per-e-mail failure throttle, in one transaction (for
    requests that hold one anyway: a password change, a deletion); failures are recorded."""
    from api.utils import hashing

    _begin_password_check(session, email, now=utcnow())
    if not hashing.verify_password(password, user.password_hash if user else None):
        return False
    assert user is not None  # a missing user's dummy hash never verifies
    _forget_failures(session, email)
    if hashing.needs_rehash(user.password_hash):
        user.password_hash = hashing.hash_password(password)
    return True


def _user_by_email(session: Session, email: str) -> User | None:
    return session.scalars(select(User).where(User.email == email)).first()


def login(*, unit_of_work: UnitOfWork, email: str, password: str, client: str) -> IssuedTokens:
    """Tokens for a right password; failures count against the e-mail and the `client`
    address (CLIENT_AUTH_FAILURES_PER_HOUR: many accounts tried from one place).

    The bcrypt check (and a rehash) runs between two short units of work, with no database
    connection held: a burst of logins cannot take the pool from other requests."""
    from api.services import limits
    from api.utils import hashing

    now = utcnow()
    with unit_of_work() as session:
        limits.check(session, limits.CLIENT_AUTH_FAILURES, client, now=now)
        user = _user_by_email(session, email)
        user_id, password_hash, version = (
            (user.id, user.password_hash, user.token_version) if user else (None, None, None)
        )
        _begin_password_check(session, email, now=now)
    verified = hashing.verify_password(password, password_hash)
    rehashed = (
        hashing.hash_password(password)
        if verified and password_hash and hashing.needs_rehash(password_hash)
        else None
    )
    with unit_of_work() as session:
        # Held until the session is started (FOR SHARE; FOR NO KEY UPDATE to rehash, so two
        # logins rehashing at once take turns instead of deadlocking over the upgrade).
        lock = {"key_share": True} if rehashed else {"read": True}
        user = session.get(User, user_id, with_for_update=lock) if verified else None
        if user is None or not _same_password(user, password_hash, version):
            limits.record(session, limits.CLIENT_AUTH_FAILURES, client, now=now)
            raise AuthenticationError(
                BAD_CREDENTIALS, code="invalid_credentials", keep_changes=True
            )
        _forget_failures(session, email)
        if rehashed is not None and user.password_hash == password_hash:
            user.password_hash = rehashed  # unless another login has just done it
        return start_session(session=session, user=user)


def _same_password(user: User, checked_hash: str | None, checked_version: int | None) -> bool:
    """Is the password still the one checked against `checked_hash`? A password changed
    meanwhile (the check was against the old one) is a wrong password, as it would be a
    moment later. A new password ends every session (`token_version`); a hash re-made at
    another cost by a login (or a check) of the same password does not."""
    return user.password_hash == checked_hash or user.token_version == checked_version


def _consume_pin(session: Session, *, email: str, purpose: Purpose, pin: str, client: str) -> None:
    """Use up the PIN; a wrong one also counts against the `client` address, and a client
    with too many failures is refused before any PIN is looked at."""
    from api.services import limits, pins

    now = utcnow()
    limits.check(session, limits.CLIENT_AUTH_FAILURES, client, now=now)
    try:
        pins.consume_pin(session=session, email=email, purpose=purpose, pin=pin)
    except ForbiddenError:
        limits.record(session, limits.CLIENT_AUTH_FAILURES, client, now=now)
        raise


def _require_password(session: Session, user: User, password: str) -> None:
    """For changes an access token alone must not allow (a stolen phone, a leaked token)."""
    if not _check_password(session, email=user.email, password=password, user=user):
        raise ForbiddenError(
            "The current password is wrong", code="wrong_password", keep_changes=True
        )


# --- sign-up, reset, change, deletion ------------------------------------------------------


def _issue_pin(session: Session, *, email: str, purpose: Purpose, client: str) -> str:
    """A PIN for `email`, counted against the `client` address (CLIENT_PIN_REQUESTS_PER_HOUR:
    one place asking for e-mails to many addresses)."""
    from api.services import limits, pins

    now = utcnow()
    limits.check(session, limits.CLIENT_PIN_REQUESTS, client, now=now)
    pin = pins.issue_pin(session=session, email=email, purpose=purpose)
    limits.record(session, limits.CLIENT_PIN_REQUESTS, client, now=now)
    return pin


def request_signup_pin(*, session: Session, email: str, client: str) -> None:
    """E-mail a sign-up PIN, or a "you already have an account" note. Both store a PIN row,
    so throttling, timing and the response are the same whether or not the account exists
    (the note's PIN is never sent, and confirm_signup refuses a registered e-mail anyway)."""
    from api.services import email as mail

    pin = _issue_pin(session, email=email, purpose="signup", client=client)
    if _user_by_email(session, email) is None:
        mail.send_email(mail.signup_pin_email(email, pin))
    else:
        mail.send_email(mail.existing_account_email(email))


def confirm_signup(
    *, session: Session, email: str, password: str, pin: str, client: str
) -> IssuedTokens:
    from api.utils import hashing

    _consume_pin(session, email=email, purpose="signup", pin=pin, client=client)
    if _user_by_email(session, email) is not None:
        raise ConflictError("An account with this e-mail already exists; log in instead")
    user = User(email=email, password_hash=hashing.hash_password(password), token_version=0)
    session.add(user)
    session.flush()
    return start_session(session=session, user=user)


def request_password_reset_pin(*, session: Session, email: str, client: str) -> None:
    """E-mail a reset PIN, or a "no account uses this address" note; as for sign-up, the
    response and throttling do not depend on whether the account exists."""
    from api.services import email as mail

    pin = _issue_pin(session, email=email, purpose="password_reset", client=client)
    if _user_by_email(session, email) is None:
        mail.send_email(mail.no_account_email(email))
    else:
        mail.send_email(mail.password_reset_pin_email(email, pin))


def confirm_password_reset(
    *, session: Session, email: str, pin: str, new_password: str, client: str
) -> IssuedTokens:
    from api.services import pins

    _consume_pin(session, email=email, purpose="password_reset", pin=pin, client=client)
    user = _user_by_email(session, email)
    if user is None:  # deleted since the PIN was sent
        raise pins.invalid_pin_error()
    return _replace_password(session, user, new_password)


def change_password(
    *, session: Session, user: User, current_password: str, new_password: str
) -> IssuedTokens:
    _require_password(session, user, current_password)
    return _replace_password(session, user, new_password)


def _replace_password(session: Session, user: User, new_password: str) -> IssuedTokens:
    from api.utils import hashing

    user.password_hash = hashing.hash_password(new_password)
    _end_every_session(session, user)
    session.execute(delete(LoginFailure).where(LoginFailure.email == user.email))
    return start_session(session=session, user=user)


def delete_account(*, session: Session, user: User, password: str) -> None:
    """Delete the account and everything it owns: the database cascades from users to
    vehicles (and their mods), conversations (and their messages), the diagnosis usage
    ledger and refresh tokens; rows keyed by the e-mail address go explicitly."""
    from api.services import pins

    _require_password(session, user, password)
    pins.discard_pins(session=session, email=user.email)
    session.execute(delete(LoginFailure).where(LoginFailure.email == user.email))
    session.execute(delete(User).where(User.id == user.id))
    session.expunge(user)
