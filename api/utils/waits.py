"""Waits as clients are told them: rounded up, never zero (a client told "0" retries at
once and is refused again)."""

from datetime import timedelta


def whole_seconds(wait: timedelta) -> int:
    """A wait rounded up to whole seconds (at least 1), as Retry-After gives it."""
    return max(1, int(-(-wait.total_seconds() // 1)))


def whole_minutes(wait: timedelta) -> int:
    """A wait rounded up to whole minutes (at least 1), for messages."""
    return max(1, -(-whole_seconds(wait) // 60))


def in_words(wait: timedelta) -> str:
    """A wait for a message, in the largest unit that keeps it short: "40 seconds",
    "12 minutes", "3 hours" (rounded up)."""
    seconds = whole_seconds(wait)
    if seconds < 120:
        return "1 second" if seconds == 1 else f"{seconds} seconds"
    minutes = whole_minutes(wait)
    return f"{minutes} minutes" if minutes < 120 else f"{-(-minutes // 60)} hours"
