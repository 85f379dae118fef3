"""A time budget on the monotonic clock."""

from __future__ import annotations

import time

from api.utils.deadline import Deadline


def test_the_time_left_is_never_negative():
    assert Deadline(time.monotonic() - 5).remaining() == 0.0


def test_the_time_left_is_at_most_the_budget():
    assert 0 < Deadline.after(60).remaining() <= 60
