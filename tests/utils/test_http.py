"""The client address per-client throttles key on: the last X-Forwarded-For hop (the one
Azure's front end appends), its port dropped, an IPv6 client by its /64."""

from __future__ import annotations

import azure.functions as func
import pytest

from api.utils.http import client_address


def request_with(forwarded_for: str | None) -> func.HttpRequest:
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return func.HttpRequest("GET", "http://localhost/api/me", headers=headers, body=b"")


@pytest.mark.parametrize(
    ("forwarded_for", "client"),
    [
        ("203.0.113.7:51234", "203.0.113.7"),
        ("203.0.113.7", "203.0.113.7"),
        # A hop the client wrote itself comes first; the front end's is last.
        ("192.0.2.1, 10.0.0.9, 203.0.113.7:51234", "203.0.113.7"),
        ("[2001:db8:1:2:3:4:5:6]:443", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("not an address", "not an address"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_the_client_is_the_last_hop(forwarded_for: str | None, client: str) -> None:
    assert client_address(request_with(forwarded_for)) == client
