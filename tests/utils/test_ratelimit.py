"""The RateLimit-Policy and RateLimit fields as the IETF draft spells them."""

from __future__ import annotations

from datetime import timedelta

from api.utils.ratelimit import Policy, fields

DAY = timedelta(days=1)


def test_both_fields_list_each_policy_in_order():
    policies = [
        Policy("diagnoses", 50, DAY, remaining=47, resets_in=timedelta(hours=1)),
        Policy("attachment-bytes", 200_000_000, DAY, 199_000_000, None, unit="content-bytes"),
    ]
    assert fields(policies) == {
        "RateLimit-Policy": '"diagnoses";q=50;w=86400, '
        '"attachment-bytes";q=200000000;qu="content-bytes";w=86400',
        "RateLimit": '"diagnoses";r=47;t=3600, "attachment-bytes";r=199000000;t=86400',
    }


def test_a_partial_second_is_rounded_up():
    """Within `t` no more than `r` may be used: saying less than the real wait would lie."""
    policy = Policy("pins", 20, DAY, remaining=0, resets_in=timedelta(seconds=0.2))
    assert fields([policy])["RateLimit"] == '"pins";r=0;t=1'
