"""JSON Web Tokens: HS256 only, with issuer, audience, token type and the user's token
version checked on every use."""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from api.errors import AuthenticationError
from api.settings import get_settings

ALGORITHMS = ["HS256"]  # an explicit allowlist: `alg: none` and key confusion are refused
TokenType = Literal["access", "refresh"]
# Access tokens verified lately, at most this many (an app sends its token on every request
# for its lifetime, ACCESS_TOKEN_MINUTES): see `access_claims`.
VERIFIED_TOKENS = 1024


def encode_token(
    subject: uuid.UUID, typ: TokenType, lifetime: timedelta, *, version: int, **claims: Any
) -> tuple[str, datetime]:
    """Sign a token for `subject` issued under the user's token `version`; returns it with
    its expiry time."""
    settings = get_settings()
    issued_at = datetime.now(UTC)
    expires_at = issued_at + lifetime
    payload = {
        "sub": str(subject),
        "iat": issued_at,
        "exp": expires_at,
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "typ": typ,
        "ver": version,
        **claims,
    }
    import jwt  # with cryptography, ~30 ms: at the first token, not at every cold start

    return jwt.encode(payload, settings.jwt_secret, algorithm=ALGORITHMS[0]), expires_at


def decode_token(token: str, typ: TokenType) -> dict[str, Any]:
    """Verify signature, expiry, issuer, audience and type; any failure is a 401."""
    import jwt

    settings = get_settings()
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret,
            algorithms=ALGORITHMS,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["sub", "iat", "exp", "iss", "aud", "typ", "ver"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationError("The token has expired", code="token_expired") from None
    except jwt.PyJWTError:
        raise AuthenticationError("The token is invalid", code="invalid_token") from None
    if claims.get("typ") != typ:
        raise AuthenticationError(f"Wrong token type: send the {typ} token", code="invalid_token")
    try:
        claims["sub"] = uuid.UUID(claims["sub"])
    except (ValueError, TypeError, AttributeError):
        raise AuthenticationError("The token is invalid", code="invalid_token") from None
    if type(claims["ver"]) is not int:
        raise AuthenticationError("The token is invalid", code="invalid_token")
    if typ == "access" or "sid" in claims:  # an access token always names its session
        try:
            claims["sid"] = uuid.UUID(claims["sid"])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise AuthenticationError("The token is invalid", code="invalid_token") from None
    return claims


class _VerifiedTokens:
    """The claims of access tokens PyJWT has verified, by token, until they expire; the
    oldest go first past VERIFIED_TOKENS, and all of them when the key, issuer or audience
    they were verified with changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verified_with: tuple[str, str, str] | None = None
        self._claims: dict[str, tuple[int, Mapping[str, Any]]] = {}  # token -> exp, claims

    def claims(self, token: str) -> Mapping[str, Any]:
        settings = get_settings()
        verified_with = (settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience)
        with self._lock:
            if verified_with != self._verified_with:
                self._claims.clear()
                self._verified_with = verified_with
            verified = self._claims.get(token)
            if verified is not None and time.time() < verified[0]:
                return verified[1]
            self._claims.pop(token, None)  # expired: PyJWT says so below
        claims = decode_token(token, "access")
        with self._lock:
            if verified_with == self._verified_with:
                if len(self._claims) >= VERIFIED_TOKENS:
                    del self._claims[next(iter(self._claims))]
                self._claims[token] = (int(claims["exp"]), claims)  # as PyJWT reads it
        return claims


_verified = _VerifiedTokens()


def access_claims(token: str) -> Mapping[str, Any]:
    """`decode_token(token, "access")`, verified by PyJWT once per token and process: the
    claims are a function of the token and the key, issuer and audience alone, so a token
    seen before needs only its expiry checked again (as PyJWT checks it: expired from `exp`
    on). A token that fails is never kept, so each failure is PyJWT's own, every time. What
    a token is still worth beyond its claims — its session alive, its user's token version
    — is read from the database on every request, so a logout ends it at once."""
    return _verified.claims(token)


def token_digest(token: str) -> str:
    """What we store of a refresh token: its SHA-256 (the token is 256+ bits of signed,
    unguessable text, so a fast hash is enough and lookups stay indexable)."""
    return hashlib.sha256(token.encode()).hexdigest()
