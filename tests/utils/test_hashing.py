"""Password hashing: the cost comes from settings (never below 10), every byte of a long
password counts, and the common-password list is the shipped file."""

from __future__ import annotations

from collections.abc import Callable

import bcrypt
import pytest
from pydantic import ValidationError

from api.settings import Settings
from api.utils import hashing
from api.utils.hashing import hash_password, is_common_password, needs_rehash, verify_password
from tests.harness import held_bcrypt_checks


def test_hash_uses_the_configured_cost(override_settings: Callable[..., None]) -> None:
    assert hash_password("a fine password").startswith("$2b$10$")
    override_settings(BCRYPT_ROUNDS="11")
    hashed = hash_password("a fine password")
    assert hashed.startswith("$2b$11$")
    assert verify_password("a fine password", hashed)
    assert not needs_rehash(hashed)


def test_a_cost_below_ten_is_refused() -> None:
    with pytest.raises(ValidationError, match="BCRYPT_ROUNDS"):
        Settings(BCRYPT_ROUNDS=9)


def test_bytes_past_bcrypts_72_all_count() -> None:
    base = "p" * 100
    hashed = hash_password(base + "A")
    assert verify_password(base + "A", hashed)
    assert not verify_password(base + "B", hashed)
    assert not verify_password(base, hashed)


def test_nul_bytes_do_not_truncate_the_password() -> None:
    hashed = hash_password("abc\x00defghij")
    assert not verify_password("abc\x00zzzzzzz", hashed)


def test_unusable_or_missing_hashes_never_verify() -> None:
    assert not verify_password("anything", None)
    assert not verify_password("anything", "!unusable")


@pytest.mark.parametrize("password_hash", [None, "!unusable"])
def test_no_usable_hash_still_costs_one_bcrypt_check_at_the_configured_cost(
    monkeypatch: pytest.MonkeyPatch, password_hash: str | None
) -> None:
    """So an unknown e-mail takes as long as a wrong password (no timing oracle)."""
    checked: list[bytes] = []
    real_checkpw = bcrypt.checkpw

    def recording_checkpw(password: bytes, hashed: bytes) -> bool:
        checked.append(hashed)
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", recording_checkpw)
    assert not verify_password("anything", password_hash)
    bcrypt_hashes = [hashed[:7] for hashed in checked if hashed.startswith(b"$2")]
    assert bcrypt_hashes == [b"$2b$10$"]


def test_rehash_is_due_when_the_cost_changes(override_settings: Callable[..., None]) -> None:
    hashed = hash_password("a fine password")
    override_settings(BCRYPT_ROUNDS="11")
    assert needs_rehash(hashed)


@pytest.mark.parametrize("password", ["password", "PASSWORD1", "qwertyuiop", "iloveyou"])
def test_common_passwords_are_recognised(password: str) -> None:
    assert is_common_password(password)


def test_an_uncommon_password_is_not_flagged() -> None:
    assert not is_common_password("Lorry gearbox 1987 whistles")


def test_legacy_hashes_verify_as_made_and_are_due_for_rehash() -> None:
    from api.utils.hashing import LEGACY_PREFIX

    legacy = LEGACY_PREFIX + bcrypt.hashpw(b"Old-Passw0rd!", bcrypt.gensalt(rounds=10)).decode()
    assert verify_password("Old-Passw0rd!", legacy)
    assert not verify_password("old-passw0rd!", legacy)
    assert not verify_password("x" * 100, legacy)  # over 72 bytes never matched there either
    assert not verify_password("Old-Passw0rd!", LEGACY_PREFIX + "garbage")
    assert needs_rehash(legacy)


# --- at most BCRYPT_MAX_CONCURRENCY hashes at once (issue 10) --------------------------------


def test_password_checks_beyond_the_limit_queue_and_past_the_queue_are_refused(
    monkeypatch, override_settings
) -> None:
    """bcrypt releases the GIL: unlimited, a burst of logins takes every core, and waiting
    ones would take every worker thread. With one slot: one hashes, one waits, a third is
    told at once to come back."""
    import threading

    from api.errors import RateLimitedError

    override_settings(BCRYPT_MAX_CONCURRENCY="1")
    stored = hashing.hash_password("a long enough passphrase")
    inside, release = held_bcrypt_checks(monkeypatch)
    results: list[bool] = []

    def log_in() -> None:
        results.append(hashing.verify_password("a long enough passphrase", stored))

    first, second = threading.Thread(target=log_in), threading.Thread(target=log_in)
    first.start()
    assert inside.acquire(timeout=10)  # the first is hashing
    second.start()
    second.join(timeout=0.2)
    assert second.is_alive()  # the second queues for the slot ...
    with pytest.raises(RateLimitedError) as busy:  # ... and a third is turned away
        hashing.verify_password("a long enough passphrase", stored)
    assert (busy.value.code, busy.value.headers) == ("login_busy", {"Retry-After": "1"})
    assert not inside.acquire(timeout=0.1)  # still only one inside
    release.set()
    first.join()
    second.join()
    assert results == [True, True]


def test_a_check_that_waits_too_long_is_told_to_retry(monkeypatch, override_settings) -> None:
    from api.errors import RateLimitedError

    override_settings(BCRYPT_MAX_CONCURRENCY="1")
    monkeypatch.setattr(hashing, "BCRYPT_QUEUE_S", 0.05)
    stored = hashing.hash_password("a long enough passphrase")
    # Another login holds the only slot.
    with hashing._gate(1).slot(), pytest.raises(RateLimitedError) as busy:
        hashing.verify_password("a long enough passphrase", stored)
    assert busy.value.code == "login_busy"
    assert busy.value.headers == {"Retry-After": "1"}
    assert hashing.verify_password("a long enough passphrase", stored)  # freed again


def test_zero_means_one_per_cpu_the_process_may_use(override_settings, monkeypatch) -> None:
    import os

    from api.settings import get_settings
    from api.utils.cpus import usable_cpus

    override_settings(BCRYPT_MAX_CONCURRENCY="0")
    assert get_settings().bcrypt_slots == usable_cpus()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})  # pinned to one CPU
    assert get_settings().bcrypt_slots == 1


def test_bcrypt_runs_at_the_lowest_cpu_priority_on_threads_of_its_own(monkeypatch) -> None:
    """Logins take the CPU time other requests leave; the worker's own thread (which serves
    other requests next) keeps its priority."""
    import os
    import threading

    import bcrypt

    check = bcrypt.checkpw
    seen: list[int] = []

    def spy(password: bytes, hashed: bytes) -> bool:
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return check(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())  # 0 unless run niced
    stored = hashing.hash_password("a long enough passphrase")
    assert hashing.verify_password("a long enough passphrase", stored)
    assert seen == [hashing.HASH_NICENESS]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == own
