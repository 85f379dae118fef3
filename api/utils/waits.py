"""Waits as clients are told them: rounded up, never zero (a client told "0" retries at
once and is refused again)."""

from datetime import timedelta


def whole_seconds(wait: timedelta) -> int:
    """A wait rounded up to whole seconds (at least 1), as Retry-After gives it."""
    return max(1, int(-(-wait.total_seconds() // 1)))


def whole_minutes(wait: timedelta) -> int:
    """A wait rounded up to whole minutes (at least 1), for messages."""
    return max(1, -(-whole_seconds(wait) // 60))
