"""JSON Web Tokens: HS256 only, with issuer, audience, token type and the user's token
version checked on every use.

Signed and verified with the standard library's HMAC (RFC 7515's compact form): a general
JWT library (PyJWT) loads cryptography for the algorithms we never use, about a tenth of a
cold process's first authenticated request, while HS256 is a keyed SHA-256. The claims are
checked in PyJWT's order and by its rules for the options we used with it (required claims,
then `iat`, `nbf`, `exp`, `iss`, `aud`); tests sign and verify across the two.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from api.errors import AuthenticationError
from api.settings import get_settings

ALGORITHM = "HS256"  # the only one: `alg: none` and key confusion are refused
TokenType = Literal["access", "refresh"]
# Access tokens verified lately, at most this many (an app sends its token on every request
# for its lifetime, ACCESS_TOKEN_MINUTES): see `access_claims`.
VERIFIED_TOKENS = 1024
REQUIRED_CLAIMS = ("sub", "iat", "exp", "iss", "aud", "typ", "ver")


def _b64encode(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _b64decode(segment: bytes) -> bytes:
    """base64url without padding, strictly (binascii.Error for any other character)."""
    return base64.b64decode(segment + b"=" * (-len(segment) % 4), altchars=b"-_", validate=True)


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


_HEADER = _b64encode(_json({"alg": ALGORITHM, "typ": "JWT"}))


def _signature(secret: str, signing_input: bytes) -> bytes:
    return hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()


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
        "iat": int(issued_at.timestamp()),  # NumericDate: whole seconds
        "exp": int(expires_at.timestamp()),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "typ": typ,
        "ver": version,
        **claims,
    }
    signing_input = _HEADER + b"." + _b64encode(_json(payload))
    signature = _b64encode(_signature(settings.jwt_secret, signing_input))
    return (signing_input + b"." + signature).decode(), expires_at


def _invalid() -> AuthenticationError:
    return AuthenticationError("The token is invalid", code="invalid_token")


def _signed_claims(token: str, secret: str) -> dict[str, Any]:
    """The claims of a well-formed HS256 token signed with `secret`; else a 401."""
    try:
        signing_input, _, signature = token.encode("ascii").rpartition(b".")
        # The signature first: nothing a client wrote is parsed before it is known to be ours.
        if not hmac.compare_digest(_b64decode(signature), _signature(secret, signing_input)):
            raise _invalid()
        header, _, payload = signing_input.partition(b".")
        claims = json.loads(_b64decode(payload))
        if json.loads(_b64decode(header)).get("alg") != ALGORITHM or not isinstance(claims, dict):
            raise _invalid()
    except (ValueError, AttributeError):  # not ASCII, base64url or JSON objects
        raise _invalid() from None
    return claims


def _numeric_date(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def decode_token(token: str, typ: TokenType) -> dict[str, Any]:
    """Verify signature, expiry, issuer, audience and type; any failure is a 401."""
    settings = get_settings()
    claims = _signed_claims(token, settings.jwt_secret)
    now = datetime.now(UTC).timestamp()
    if any(name not in claims for name in REQUIRED_CLAIMS):
        raise _invalid()
    for name in ("iat", "nbf"):  # not issued in the future, or not valid yet
        if name in claims and not (_numeric_date(claims[name]) and claims[name] <= now):
            raise _invalid()
    if not _numeric_date(claims["exp"]):
        raise _invalid()
    if claims["exp"] <= now:
        raise AuthenticationError("The token has expired", code="token_expired")
    audiences = [claims["aud"]] if isinstance(claims["aud"], str) else claims["aud"]
    if claims["iss"] != settings.jwt_issuer or not (
        isinstance(audiences, list) and settings.jwt_audience in audiences
    ):
        raise _invalid()
    if claims.get("typ") != typ:
        raise AuthenticationError(f"Wrong token type: send the {typ} token", code="invalid_token")
    try:
        claims["sub"] = uuid.UUID(claims["sub"])
    except (ValueError, TypeError, AttributeError):
        raise _invalid() from None
    if type(claims["ver"]) is not int:
        raise _invalid()
    if typ == "access" or "sid" in claims:  # an access token always names its session
        try:
            claims["sid"] = uuid.UUID(claims["sid"])
        except (KeyError, ValueError, TypeError, AttributeError):
            raise _invalid() from None
    return claims


class _VerifiedTokens:
    """The claims of access tokens `decode_token` has verified, by token, until they expire; the
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
            self._claims.pop(token, None)  # expired: decode_token says so below
        claims = decode_token(token, "access")
        with self._lock:
            if verified_with == self._verified_with:
                if len(self._claims) >= VERIFIED_TOKENS:
                    del self._claims[next(iter(self._claims))]
                self._claims[token] = (int(claims["exp"]), claims)  # as decode_token reads it
        return claims


_verified = _VerifiedTokens()


def access_claims(token: str) -> Mapping[str, Any]:
    """`decode_token(token, "access")`, verified once per token and process: the claims are
    a function of the token and the key, issuer and audience alone, so a token seen before
    needs only its expiry checked again (as decode_token checks it: expired from `exp` on).
    A token that fails is never kept, so each failure is decode_token's own, every time. What
    a token is still worth beyond its claims — its session alive, its user's token version
    — is read from the database on every request, so a logout ends it at once."""
    return _verified.claims(token)


def token_digest(token: str) -> str:
    """What we store of a refresh token: its SHA-256 (the token is 256+ bits of signed,
    unguessable text, so a fast hash is enough and lookups stay indexable)."""
    return hashlib.sha256(token.encode()).hexdigest()
