"""Password hashing: bcrypt over a fixed-length pre-hash, and a refusal list of common
passwords.

bcrypt reads at most 72 bytes (bcrypt 5 refuses longer input) and stops at a NUL byte, so
a 128-character password (up to 512 bytes of UTF-8) cannot go in as it is. Every password
is first reduced to base64(HMAC-SHA256(PREHASH_KEY, password)): 44 ASCII bytes with no NUL,
so every byte of every password counts and no length needs a special case. The key is not
a secret; it separates our pre-hash from plain SHA-256, so hashes leaked from other sites
(unsalted SHA-256 of passwords) cannot be tested against our bcrypt hashes without
cracking bcrypt itself ("password shucking").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from functools import cache
from pathlib import Path

import bcrypt

from api.settings import get_settings

PREHASH_KEY = b"axly-password-prehash-v1"
# Migration 05 marks the seed system's hashes (bcrypt of the raw password) with this prefix:
# they still verify, once, as they were made, and are replaced at that login.
LEGACY_PREFIX = "legacy-bcrypt:"
COMMON_PASSWORDS_FILE = Path(__file__).parent.parent / "data" / "common-passwords.txt"


def _prehash(password: str) -> bytes:
    digest = hmac.new(PREHASH_KEY, password.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest)


def hash_password(password: str) -> str:
    salt = bcrypt.gensalt(rounds=get_settings().bcrypt_rounds)
    return bcrypt.hashpw(_prehash(password), salt).decode()


@cache
def _dummy_hash(rounds: int) -> bytes:
    return bcrypt.hashpw(b"no account has this password", bcrypt.gensalt(rounds=rounds))


def verify_password(password: str, password_hash: str | None) -> bool:
    """Does `password` match? Every path costs one bcrypt check at the configured cost: with
    no usable hash (unknown e-mail) a dummy hash is checked anyway, so an unknown e-mail
    takes as long as a wrong password."""
    if password_hash is not None and password_hash.startswith(LEGACY_PREFIX):
        return _verify_legacy(password, password_hash.removeprefix(LEGACY_PREFIX))
    candidate = _prehash(password)
    try:
        if password_hash is not None:
            return bcrypt.checkpw(candidate, password_hash.encode())
    except ValueError:  # not a bcrypt hash: an account without a usable password
        pass
    bcrypt.checkpw(candidate, _dummy_hash(get_settings().bcrypt_rounds))
    return False


def _verify_legacy(password: str, legacy_hash: str) -> bool:
    """The seed system's scheme: bcrypt of the raw password, which bcrypt reads only up to
    72 bytes (so a longer password never matched there either)."""
    raw = password.encode()
    try:
        return len(raw) <= 72 and bcrypt.checkpw(raw, legacy_hash.encode())
    except ValueError:  # a malformed legacy hash: no usable password
        bcrypt.checkpw(_prehash(password), _dummy_hash(get_settings().bcrypt_rounds))
        return False


def needs_rehash(password_hash: str) -> bool:
    """True for a legacy hash, or one made with another cost than BCRYPT_ROUNDS asks for."""
    if password_hash.startswith(LEGACY_PREFIX):
        return True
    parts = password_hash.split("$")  # "", "2b", "12", salt+hash
    return len(parts) != 4 or parts[2] != f"{get_settings().bcrypt_rounds:02d}"


@cache
def _common_passwords() -> frozenset[str]:
    lines = COMMON_PASSWORDS_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def is_common_password(password: str) -> bool:
    """Is it in the shipped list (see api/data/common-passwords.txt for its source)?"""
    return password.lower() in _common_passwords()
