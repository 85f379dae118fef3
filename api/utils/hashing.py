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
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import TypeVar

import bcrypt

from api.errors import RateLimitedError
from api.settings import get_settings

T = TypeVar("T")

PREHASH_KEY = b"axly-password-prehash-v1"
# Migration 05 marks the seed system's hashes (bcrypt of the raw password) with this prefix:
# they still verify, once, as they were made, and are replaced at that login.
LEGACY_PREFIX = "legacy-bcrypt:"
COMMON_PASSWORDS_FILE = Path(__file__).parent.parent / "data" / "common-passwords.txt"
# A password check waits for a free slot at most this long: the worker's threads are few
# (PYTHON_THREADPOOL_THREAD_COUNT, min(32, cores + 4) by default) and a waiting check holds one.
BCRYPT_QUEUE_S = 10.0
BCRYPT_BUSY_RETRY = timedelta(seconds=1)  # a login takes a fraction of a second
# bcrypt runs on threads of its own at the lowest CPU priority (nice 19, those threads
# only): a burst of logins then gets the CPU time other requests leave, instead of an equal
# share of every core (figures: bench/logins.py, README "Tests").
HASH_NICENESS = 19


class _BcryptGate:
    """`slots` bcrypt computations at once, and as many more waiting for one; a check
    beyond that is refused at once, so logins never hold more than 2 x `slots` of the
    worker's threads and the rest keep serving other requests.

    The refusal is a 429 `login_busy` with Retry-After, not a 503: it is this instance's
    sign-in rate being enforced during a burst, which the app retries, not a fault — a 5xx
    would count towards the 5xx alert (infra/) for expected behaviour."""

    def __init__(self, slots: int) -> None:
        self._slots = threading.BoundedSemaphore(slots)
        self._admitted = threading.BoundedSemaphore(2 * slots)
        self._threads = ThreadPoolExecutor(
            max_workers=slots, thread_name_prefix="axly-bcrypt", initializer=_lower_priority
        )

    def run(self, compute: Callable[[bytes, bytes], T], password: bytes, salt: bytes) -> T:
        """`compute(password, salt)` in a slot, on one of the low-priority hash threads."""
        with self.slot():
            return self._threads.submit(compute, password, salt).result()

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._admitted.acquire(blocking=False):
            raise _busy()
        try:
            if not self._slots.acquire(timeout=BCRYPT_QUEUE_S):
                raise _busy()
            try:
                yield
            finally:
                self._slots.release()
        finally:
            self._admitted.release()


def _lower_priority() -> None:
    """Lower this thread's CPU priority (on Linux a thread id works as a process id here,
    for this thread alone); where that is not possible, it keeps the normal priority."""
    with suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASH_NICENESS)


def _busy() -> RateLimitedError:
    return RateLimitedError(
        "Too many sign-ins at once; try again in a few seconds",
        retry_after=BCRYPT_BUSY_RETRY,
        code="login_busy",
    )


@cache
def _gate(slots: int) -> _BcryptGate:
    return _BcryptGate(slots)


def _bcrypt(compute: Callable[[bytes, bytes], T], password: bytes, salt: bytes) -> T:
    """A bcrypt computation in one of BCRYPT_MAX_CONCURRENCY slots, at low priority. bcrypt
    releases the GIL, so without a limit every worker thread of a burst of logins hashes at
    once and the cores have no time left for other requests."""
    return _gate(get_settings().bcrypt_slots).run(compute, password, salt)


def _prehash(password: str) -> bytes:
    digest = hmac.new(PREHASH_KEY, password.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest)


def hash_password(password: str) -> str:
    salt = bcrypt.gensalt(rounds=get_settings().bcrypt_rounds)
    return _bcrypt(bcrypt.hashpw, _prehash(password), salt).decode()


def _check(candidate: bytes, password_hash: bytes) -> bool:
    return _bcrypt(bcrypt.checkpw, candidate, password_hash)


@cache
def _dummy_hash(rounds: int) -> bytes:
    return _bcrypt(bcrypt.hashpw, b"no account has this password", bcrypt.gensalt(rounds=rounds))


def verify_password(password: str, password_hash: str | None) -> bool:
    """Does `password` match? Every path costs one bcrypt check at the configured cost: with
    no usable hash (unknown e-mail) a dummy hash is checked anyway, so an unknown e-mail
    takes as long as a wrong password."""
    if password_hash is not None and password_hash.startswith(LEGACY_PREFIX):
        return _verify_legacy(password, password_hash.removeprefix(LEGACY_PREFIX))
    candidate = _prehash(password)
    try:
        if password_hash is not None:
            return _check(candidate, password_hash.encode())
    except ValueError:  # not a bcrypt hash: an account without a usable password
        pass
    _check(candidate, _dummy_hash(get_settings().bcrypt_rounds))
    return False


def _verify_legacy(password: str, legacy_hash: str) -> bool:
    """The seed system's scheme: bcrypt of the raw password, which bcrypt reads only up to
    72 bytes (so a longer password never matched there either)."""
    raw = password.encode()
    try:
        return len(raw) <= 72 and _check(raw, legacy_hash.encode())
    except ValueError:  # a malformed legacy hash: no usable password
        _check(_prehash(password), _dummy_hash(get_settings().bcrypt_rounds))
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
