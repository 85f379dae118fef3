"""Waits as clients are told them, in messages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from api.utils.waits import in_words


@pytest.mark.parametrize(
    ("wait", "words"),
    [
        (timedelta(seconds=0.2), "1 second"),
        (timedelta(seconds=119), "119 seconds"),
        (timedelta(minutes=2), "2 minutes"),
        (timedelta(minutes=118, seconds=1), "119 minutes"),
        (timedelta(minutes=119, seconds=1), "2 hours"),
        (timedelta(hours=23, minutes=1), "24 hours"),
    ],
)
def test_waits_are_told_in_the_largest_short_unit(wait: timedelta, words: str) -> None:
    assert in_words(wait) == words
