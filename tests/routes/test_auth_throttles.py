"""Per-client throttles on the unauthenticated account routes (issue 10): PIN e-mails asked
for, and failed logins and PIN confirmations, per client address — the hop Azure's front end
(here the local host, as it does) appends to X-Forwarded-For, so a forged earlier hop does
not make a new client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import Connection

from api.functions import ROUTE_PREFIX
from tests.factories import PASSWORD, new_email, sign_up
from tests.harness import local_host
from tests.outbox import Outbox


@pytest.fixture
def from_address(connection: Connection) -> Iterator[dict[str, httpx.Client]]:
    """Clients of the API connecting from two addresses."""
    clients = {
        address: httpx.Client(
            transport=httpx.WSGITransport(app=local_host(), remote_addr=address),
            base_url=f"http://testserver/{ROUTE_PREFIX}",
        )
        for address in ("198.51.100.7", "203.0.113.20")
    }
    yield clients
    for client in clients.values():
        client.close()


def test_pin_emails_asked_for_from_one_address_are_limited(
    from_address: dict[str, httpx.Client], override_settings
) -> None:
    override_settings(CLIENT_PIN_REQUESTS_PER_HOUR="2")
    here, elsewhere = from_address["198.51.100.7"], from_address["203.0.113.20"]
    assert here.post("/request_pin", json={"email": new_email()}).status_code == 202
    reset = here.post("/request_password_reset_pin", json={"email": new_email()})
    assert reset.status_code == 202

    refused = here.post("/request_pin", json={"email": new_email()})
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_pin_requests"
    assert 3500 <= int(refused.headers["Retry-After"]) <= 3600
    # A hop written by the client is not an address of its own.
    forged = here.post(
        "/request_pin", json={"email": new_email()}, headers={"X-Forwarded-For": "192.0.2.99"}
    )
    assert forged.status_code == 429
    # Another address is served.
    assert elsewhere.post("/request_pin", json={"email": new_email()}).status_code == 202


def test_failed_logins_and_wrong_pins_from_one_address_are_limited(
    from_address: dict[str, httpx.Client], outbox: Outbox, override_settings
) -> None:
    """Many accounts tried from one place: each e-mail's own throttle never trips."""
    here, elsewhere = from_address["198.51.100.7"], from_address["203.0.113.20"]
    email = new_email()
    sign_up(elsewhere, outbox, email)
    override_settings(CLIENT_AUTH_FAILURES_PER_HOUR="3")
    for _ in range(2):
        failed = here.post("/login", json={"email": new_email(), "password": "not it at all"})
        assert failed.status_code == 401
    assert here.post("/request_password_reset_pin", json={"email": email}).status_code == 202
    pin = outbox.pin_for(email)
    wrong = f"{(int(pin) + 1) % 10**6:06d}"
    wrong_pin = {"email": email, "pin": wrong, "new_password": "A new long passphrase 1"}
    assert here.post("/confirm_password_reset", json=wrong_pin).status_code == 403

    # Three failures: even the right password is refused from here for the hour ...
    refused = here.post("/login", json={"email": email, "password": PASSWORD})
    assert refused.status_code == 429
    assert refused.json()["code"] == "too_many_failed_attempts"
    right_pin = {**wrong_pin, "pin": pin}
    assert here.post("/confirm_password_reset", json=right_pin).status_code == 429
    # ... but not from elsewhere.
    assert elsewhere.post("/login", json={"email": email, "password": PASSWORD}).status_code == 200


def test_successful_logins_do_not_count(
    from_address: dict[str, httpx.Client], outbox: Outbox, override_settings
) -> None:
    """A carrier puts many phones behind one address: only failures are counted."""
    here = from_address["198.51.100.7"]
    email = new_email()
    sign_up(here, outbox, email)
    override_settings(CLIENT_AUTH_FAILURES_PER_HOUR="1")
    for _ in range(3):
        assert here.post("/login", json={"email": email, "password": PASSWORD}).status_code == 200
