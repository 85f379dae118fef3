"""The accounts service on the real database: what login, refresh, logout, password changes
and deletion store and revoke, and what each refusal says (code, Retry-After, whether the
failed request's writes are kept)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import AuthenticationError, ConflictError, ForbiddenError, RateLimitedError
from api.models import EmailVerification, LoginFailure, RefreshToken, User
from api.services import auth, pins
from api.services.tokens import decode_token, token_digest
from tests.factories import PASSWORD, count, create_user, new_email
from tests.outbox import Outbox

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
CLIENT = "198.51.100.7"


def log_in(session: Session, *, email: str, password: str, client: str) -> auth.IssuedTokens:
    """auth.login with the test's session as each of its units of work."""

    @contextmanager
    def unit_of_work() -> Iterator[Session]:
        yield session

    return auth.login(unit_of_work=unit_of_work, email=email, password=password, client=client)


@pytest.fixture
def account(session: Session) -> User:
    return create_user(session, email=new_email(), password=PASSWORD)


def family(session: Session, tokens: auth.IssuedTokens) -> list[RefreshToken]:
    """Every refresh token of the session `tokens` belongs to, oldest first."""
    session.flush()
    stored = session.scalars(
        select(RefreshToken).where(RefreshToken.token_hash == token_digest(tokens.refresh_token))
    ).one()
    return list(
        session.scalars(
            select(RefreshToken)
            .where(RefreshToken.family_id == stored.family_id)
            .order_by(RefreshToken.created_at)
        )
    )


def test_login_starts_a_session_the_access_token_names(session: Session, account: User) -> None:
    tokens = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    (stored,) = family(session, tokens)
    claims = decode_token(tokens.access_token, "access")
    assert claims["sub"] == account.id
    assert claims["sid"] == stored.family_id
    assert stored.user_id == account.id
    assert stored.token_hash != tokens.refresh_token  # only its digest is kept
    assert auth.authenticate(session=session, token=tokens.access_token) == auth.Caller(
        user=account, session_id=stored.family_id
    )


def test_failed_logins_are_recorded_then_throttled_with_retry_after(
    session: Session, account: User
) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        for _ in range(auth.LOGIN_FAILURE_LIMIT):
            with pytest.raises(AuthenticationError) as wrong:
                log_in(session, email=account.email, password="not it", client=CLIENT)
            assert wrong.value.code == "invalid_credentials"
            assert wrong.value.keep_changes  # the failure is recorded though the request fails
            clock.shift(timedelta(minutes=1))
        with pytest.raises(RateLimitedError) as throttled:
            log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    assert throttled.value.code == "too_many_login_failures"
    # The first failure (at T0) leaves the 15-minute window 5 minutes from now.
    assert throttled.value.headers == {"Retry-After": "300"}
    assert count(session, LoginFailure, LoginFailure.email == account.email) == 10


def test_a_successful_login_clears_the_addresss_failures(session: Session, account: User) -> None:
    with pytest.raises(AuthenticationError):
        log_in(session, email=account.email, password="not it", client=CLIENT)
    log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    assert count(session, LoginFailure, LoginFailure.email == account.email) == 0


def test_refresh_rotates_and_a_replayed_token_revokes_the_whole_family(
    session: Session, account: User
) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        first = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
        clock.shift(timedelta(seconds=1))  # family() orders by creation time
        second = auth.refresh_session(session=session, refresh_token=first.refresh_token)
        old, new = family(session, second)
        assert old.replaced_by_id == new.id
        assert old.revoked_at is not None
        assert new.revoked_at is None

        clock.shift(timedelta(seconds=10, microseconds=1))  # past REFRESH_REUSE_INTERVAL_S
        with pytest.raises(AuthenticationError) as replayed:
            auth.refresh_session(session=session, refresh_token=first.refresh_token)
    assert replayed.value.code == "refresh_token_reused"
    assert replayed.value.keep_changes  # the revocation outlives the refused request
    assert all(token.revoked_at is not None for token in family(session, second))


def test_a_token_presented_again_within_the_reuse_interval_gets_a_sibling(
    session: Session, account: User
) -> None:
    with time_machine.travel(T0, tick=False) as clock:
        first = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
        clock.shift(timedelta(seconds=1))  # family() orders by creation time
        second = auth.refresh_session(session=session, refresh_token=first.refresh_token)
        clock.shift(timedelta(seconds=10))
        again = auth.refresh_session(session=session, refresh_token=first.refresh_token)
        original, successor, sibling = family(session, again)
        assert again.refresh_token not in (first.refresh_token, second.refresh_token)
        assert original.replaced_by_id == successor.id  # the rotation is not rewritten
        assert (successor.revoked_at, sibling.revoked_at) == (None, None)
        assert decode_token(again.access_token, "access")["sid"] == original.family_id
        # Both pairs work: each screen keeps the one it got.
        for tokens in (second, again):
            auth.authenticate(session=session, token=tokens.access_token)
            auth.refresh_session(session=session, refresh_token=tokens.refresh_token)


def test_no_sibling_for_a_session_that_ended_meanwhile(session: Session, account: User) -> None:
    first = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    second = auth.refresh_session(session=session, refresh_token=first.refresh_token)
    caller = auth.authenticate(session=session, token=second.access_token)
    auth.logout(session=session, caller=caller, refresh_token=None, everywhere=False)
    with pytest.raises(AuthenticationError) as refused:
        auth.refresh_session(session=session, refresh_token=first.refresh_token)
    assert refused.value.code == "refresh_token_reused"


def test_a_reuse_interval_of_zero_revokes_at_once(
    session: Session, account: User, override_settings
) -> None:
    override_settings(REFRESH_REUSE_INTERVAL_S="0")
    with time_machine.travel(T0, tick=False) as clock:
        first = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
        auth.refresh_session(session=session, refresh_token=first.refresh_token)
        clock.shift(timedelta(microseconds=1))
        with pytest.raises(AuthenticationError) as replayed:
            auth.refresh_session(session=session, refresh_token=first.refresh_token)
    assert replayed.value.code == "refresh_token_reused"


def test_logout_ends_the_callers_own_session_only(session: Session, account: User) -> None:
    here = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    elsewhere = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    caller = auth.authenticate(session=session, token=here.access_token)
    auth.logout(session=session, caller=caller, refresh_token=None, everywhere=False)
    assert [token.revoked_at is not None for token in family(session, here)] == [True]
    assert [token.revoked_at is not None for token in family(session, elsewhere)] == [False]


def test_logout_ignores_another_users_refresh_token(session: Session, account: User) -> None:
    other = create_user(session, email=new_email(), password=PASSWORD)
    theirs = log_in(session, email=other.email, password=PASSWORD, client=CLIENT)
    mine = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    caller = auth.authenticate(session=session, token=mine.access_token)
    auth.logout(
        session=session, caller=caller, refresh_token=theirs.refresh_token, everywhere=False
    )
    assert [token.revoked_at for token in family(session, theirs)] == [None]


def test_logout_everywhere_ends_every_token_at_once(session: Session, account: User) -> None:
    tokens = [log_in(session, email=account.email, password=PASSWORD, client=CLIENT) for _ in "ab"]
    caller = auth.authenticate(session=session, token=tokens[0].access_token)
    auth.logout(session=session, caller=caller, refresh_token=None, everywhere=True)
    assert all(t.revoked_at is not None for bundle in tokens for t in family(session, bundle))
    with pytest.raises(AuthenticationError) as ended:
        auth.authenticate(session=session, token=tokens[1].access_token)
    assert ended.value.code == "session_ended"


def test_changing_the_password_needs_the_current_one_and_ends_other_sessions(
    session: Session, account: User
) -> None:
    old = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    with pytest.raises(ForbiddenError) as wrong:
        auth.change_password(
            session=session, user=account, current_password="not it", new_password="x" * 12
        )
    assert wrong.value.code == "wrong_password"
    assert wrong.value.keep_changes  # counts towards the login throttle

    new = auth.change_password(
        session=session, user=account, current_password=PASSWORD, new_password="x" * 12
    )
    assert family(session, old)[0].revoked_at is not None
    assert count(session, LoginFailure, LoginFailure.email == account.email) == 0
    assert auth.authenticate(session=session, token=new.access_token).user == account
    with pytest.raises(AuthenticationError):
        auth.authenticate(session=session, token=old.access_token)
    log_in(session, email=account.email, password="x" * 12, client=CLIENT)


def test_sign_up_needs_the_pin_and_a_free_address(
    session: Session, account: User, outbox: Outbox
) -> None:
    email = new_email()
    auth.request_signup_pin(session=session, email=email, client=CLIENT)
    tokens = auth.confirm_signup(
        session=session, email=email, password=PASSWORD, pin=outbox.pin_for(email), client=CLIENT
    )
    assert tokens.user.email == email

    pin = pins.issue_pin(session=session, email=account.email, purpose="signup")
    with pytest.raises(ConflictError):
        auth.confirm_signup(
            session=session, email=account.email, password=PASSWORD, pin=pin, client=CLIENT
        )


def test_deleting_the_account_removes_the_rows_keyed_by_its_address(
    session: Session, account: User
) -> None:
    email, user_id = account.email, account.id
    pins.issue_pin(session=session, email=email, purpose="password_reset")
    log_in(session, email=email, password=PASSWORD, client=CLIENT)
    with pytest.raises(AuthenticationError):
        log_in(session, email=email, password="not it", client=CLIENT)

    auth.delete_account(session=session, user=account, password=PASSWORD)
    assert session.get(User, user_id) is None
    assert count(session, EmailVerification, EmailVerification.email == email) == 0
    assert count(session, LoginFailure, LoginFailure.email == email) == 0
    assert count(session, RefreshToken, RefreshToken.user_id == user_id) == 0


def test_a_token_of_a_deleted_account_is_refused(session: Session, account: User) -> None:
    tokens = log_in(session, email=account.email, password=PASSWORD, client=CLIENT)
    auth.delete_account(session=session, user=account, password=PASSWORD)
    with pytest.raises(AuthenticationError) as gone:
        auth.authenticate(session=session, token=tokens.access_token)
    assert gone.value.code == "account_deleted"


def test_a_password_changed_while_the_login_checked_the_old_one_is_a_wrong_one(
    session: Session, account: User
) -> None:
    """The check runs between two units of work; a change in between (another device, a
    reset) wins: no session is started on the old password."""
    from api.utils import hashing

    entered: list[None] = []

    @contextmanager
    def unit_of_work() -> Iterator[Session]:
        entered.append(None)
        if len(entered) == 2:  # after the check, before the outcome is written
            account.password_hash = hashing.hash_password("another long passphrase")
            account.token_version += 1  # as every new password does: it ends every session
            session.flush()
        yield session

    with pytest.raises(AuthenticationError):
        auth.login(unit_of_work=unit_of_work, email=account.email, password=PASSWORD, client=CLIENT)
    assert count(session, RefreshToken, RefreshToken.user_id == account.id) == 0
