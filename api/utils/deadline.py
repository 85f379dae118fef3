"""A time budget for work made of several slow steps, so the whole ends in time (a
diagnosis turn makes up to five provider calls; Azure's front end drops an HTTP request at
about 230 s, whatever the function is still doing)."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Deadline:
    """Made once where the work starts and passed down explicitly rather than kept in a
    contextvar: every function that spends the budget says so in its signature. Measured
    on the monotonic clock, so wall-clock adjustments neither stretch nor shrink it."""

    expires_at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires_at - time.monotonic())
