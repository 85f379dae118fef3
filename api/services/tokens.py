"""JSON Web Tokens: HS256 only, with issuer, audience, token type and the user's token
version checked on every use."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from api.errors import AuthenticationError
from api.settings import get_settings

ALGORITHMS = ["HS256"]  # an explicit allowlist: `alg: none` and key confusion are refused
TokenType = Literal["access", "refresh"]


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


def token_digest(token: str) -> str:
    """What we store of a refresh token: its SHA-256 (the token is 256+ bits of signed,
    unguessable text, so a fast hash is enough and lookups stay indexable)."""
    return hashlib.sha256(token.encode()).hexdigest()
