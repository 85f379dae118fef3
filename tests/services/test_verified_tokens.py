"""Verified access tokens kept per process (`api.services.tokens.access_claims`):
`decode_token` verifies each token once; a kept token still expires on time, the cache is
bounded, and a new key (or issuer, or audience) forgets every token verified with the old
one."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import time_machine

from api.errors import AuthenticationError
from api.services import tokens
from tests.harness import changed_settings


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A cache of its own for the test, and the tokens decode_token was asked to verify."""
    verified: list[str] = []
    decode = tokens.decode_token

    def counted(token: str, typ: tokens.TokenType) -> dict[str, object]:
        verified.append(token)
        return decode(token, typ)

    monkeypatch.setattr(tokens, "_verified", tokens._VerifiedTokens())
    monkeypatch.setattr(tokens, "decode_token", counted)
    return verified


def access_token(lifetime: timedelta = timedelta(minutes=15)) -> str:
    token, _ = tokens.encode_token(
        uuid.uuid4(), "access", lifetime, version=0, sid=str(uuid.uuid4())
    )
    return token


def test_a_token_is_verified_once_and_its_claims_kept(verifications: list[str]) -> None:
    token = access_token()
    first = tokens.access_claims(token)
    assert tokens.access_claims(token) == first
    assert verifications == [token]
    assert isinstance(first["sub"], uuid.UUID)
    assert isinstance(first["sid"], uuid.UUID)


def test_a_kept_token_expires_on_time(verifications: list[str]) -> None:
    with time_machine.travel("2030-01-01T00:00:00Z", tick=False) as traveller:
        token = access_token(timedelta(minutes=15))
        tokens.access_claims(token)
        traveller.shift(timedelta(minutes=14, seconds=59))
        tokens.access_claims(token)  # still kept
        traveller.shift(timedelta(seconds=1))  # expired from `exp` on, as decode_token says
        with pytest.raises(AuthenticationError) as expired:
            tokens.access_claims(token)
    assert expired.value.code == "token_expired"
    assert verifications == [token, token]


def test_a_token_that_fails_is_never_kept(verifications: list[str]) -> None:
    forged = access_token()[:-2] + "xx"
    for _ in range(2):
        with pytest.raises(AuthenticationError) as refused:
            tokens.access_claims(forged)
        assert refused.value.code == "invalid_token"
    assert verifications == [forged, forged]


def test_the_oldest_tokens_go_first_past_the_bound(
    verifications: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_TOKENS", 2)
    oldest, older, newest = access_token(), access_token(), access_token()
    for token in (oldest, older, newest, older, newest):
        tokens.access_claims(token)
    assert verifications == [oldest, older, newest]  # the last two were kept
    tokens.access_claims(oldest)
    assert verifications == [oldest, older, newest, oldest]


def test_a_new_key_forgets_every_token_verified_with_the_old_one(
    verifications: list[str],
) -> None:
    token = access_token()
    tokens.access_claims(token)
    with (
        changed_settings(JWT_SECRET="another-secret-" + "x" * 40),
        pytest.raises(AuthenticationError) as refused,
    ):
        tokens.access_claims(token)
    assert refused.value.code == "invalid_token"
    tokens.access_claims(token)  # the old key again: verified afresh
    assert verifications == [token, token, token]
