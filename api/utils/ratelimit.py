"""The `RateLimit-Policy` and `RateLimit` response fields of the IETF httpapi draft
"RateLimit header fields for HTTP" (draft-ietf-httpapi-ratelimit-headers-11, May 2026):
structured-field Lists (RFC 9651) of one Item per quota policy, serialised by `http_sf`:

    RateLimit-Policy: "diagnoses";q=50;w=86400,
                      "attachment-bytes";q=200000000;qu="content-bytes";w=86400
    RateLimit: "diagnoses";r=47;t=3600, "attachment-bytes";r=199000000;t=86400

(one line each on the wire).

A policy's `q` is its quota in its unit (`qu`; the draft's default unit is requests), `w`
its window in seconds; `r` is what is available now and `t` the seconds within which no
more than `r` can be used (with a sliding window: until the oldest use counted leaves it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from api.utils.waits import whole_seconds

if TYPE_CHECKING:
    from http_sf.types import ListType, ParamsType

# RFC 9651's largest Integer (15 digits): a quota beyond it cannot be sent in these fields.
LARGEST_QUOTA = 999_999_999_999_999

POLICY_FIELD = "RateLimit-Policy"
LIMIT_FIELD = "RateLimit"


@dataclass(frozen=True)
class Policy:
    name: str
    quota: int
    window: timedelta
    remaining: int
    # How long before more than `remaining` can be used (None: the whole window).
    resets_in: timedelta | None
    unit: str | None = None  # a registered quota unit, e.g. "content-bytes"


def fields(policies: Iterable[Policy]) -> dict[str, str]:
    """Both fields for the policies, in their order."""
    from http_sf import ser  # only where a response carries them

    declared: ListType = []
    current: ListType = []
    for policy in policies:
        unit: ParamsType = {"qu": policy.unit} if policy.unit else {}
        declared.append((policy.name, {"q": policy.quota, **unit, "w": _s(policy.window)}))
        resets_in = policy.window if policy.resets_in is None else policy.resets_in
        left: ParamsType = {"r": policy.remaining, "t": _s(resets_in)}
        current.append((policy.name, left))
    return {POLICY_FIELD: ser(declared), LIMIT_FIELD: ser(current)}


def _s(duration: timedelta) -> int:
    """Whole seconds, rounded up: within `t` the quota must not grow, so never say less."""
    return whole_seconds(duration)
