"""Our HS256 tokens against PyJWT's: the same bytes for the same claims, and the same verdicts
on tokens PyJWT signs (the attacks through the API are in tests/routes/test_auth_tokens.py)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import time_machine

from api.errors import AuthenticationError
from api.services.tokens import TokenType, decode_token, encode_token
from api.settings import get_settings

T0 = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
SUBJECT = uuid.UUID("3f2504e0-4f89-11d3-9a0c-0305e82c3301")
SESSION = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")


def claims(**overrides: object) -> dict:
    settings = get_settings()
    return {
        "sub": str(SUBJECT),
        "iat": int(T0.timestamp()),
        "exp": int((T0 + timedelta(minutes=5)).timestamp()),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "typ": "access",
        "ver": 3,
        "sid": str(SESSION),
        **overrides,
    }


def pyjwt(payload: dict, algorithm: str = "HS256", secret: str | None = None) -> str:
    return jwt.encode(payload, secret or get_settings().jwt_secret, algorithm=algorithm)


def refused(token: str, typ: TokenType = "access") -> str:
    with pytest.raises(AuthenticationError) as refusal:
        decode_token(token, typ)
    return refusal.value.code


def test_our_tokens_are_pyjwts_bytes_and_verify_there() -> None:
    with time_machine.travel(T0, tick=False):
        token, expires_at = encode_token(
            SUBJECT, "access", timedelta(minutes=5), version=3, sid=str(SESSION)
        )
        assert token == pyjwt(claims())
        settings = get_settings()
        decoded = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
        )
    assert decoded == claims()
    assert expires_at == T0 + timedelta(minutes=5)


def test_pyjwts_tokens_decode_to_typed_claims() -> None:
    with time_machine.travel(T0 + timedelta(minutes=1), tick=False):
        decoded = decode_token(pyjwt(claims(aud=["other", get_settings().jwt_audience])), "access")
    assert decoded["sub"] == SUBJECT
    assert decoded["sid"] == SESSION
    assert decoded["ver"] == 3


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "not.a.jwt",
        "é.é.é",
        "e30.e30.!!!!",
        "W10.W10." + "x" * 43,  # arrays, and no valid signature
    ],
)
def test_malformed_tokens_are_invalid(token: str) -> None:
    assert refused(token) == "invalid_token"


def test_another_algorithm_with_our_secret_is_invalid() -> None:
    with time_machine.travel(T0, tick=False):
        assert refused(pyjwt(claims(), algorithm="HS384")) == "invalid_token"


def test_a_signed_payload_that_is_not_an_object_is_invalid() -> None:
    with time_machine.travel(T0, tick=False):
        assert refused(jwt.api_jws.encode(b"[1]", get_settings().jwt_secret)) == "invalid_token"


@pytest.mark.parametrize(
    "overrides",
    [
        {"iat": int((T0 + timedelta(minutes=1)).timestamp())},  # issued in the future
        {"nbf": int((T0 + timedelta(minutes=1)).timestamp())},  # not valid yet
        {"iat": "yesterday"},
        {"exp": "later"},
        {"exp": True},
        {"aud": ["other"]},
        {"aud": {"axly": True}},
        {"iss": "https://evil.example"},
        {"sub": "not-a-user-id"},
        {"sub": 7},
    ],
)
def test_claims_pyjwt_refuses_are_refused(overrides: dict) -> None:
    with time_machine.travel(T0, tick=False):
        assert refused(pyjwt(claims(**overrides))) == "invalid_token"


def test_expiry_is_reported_once_the_signature_holds() -> None:
    token = pyjwt(claims())
    with time_machine.travel(T0 + timedelta(minutes=5), tick=False):
        assert refused(token) == "token_expired"
        assert refused(token[:-2] + "AA") == "invalid_token"
