"""Helpers for the accounts tests: read the e-mails the console backend sends (what a
developer sees in the log) and sign users up through the API."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass

import httpx
import pytest

EMAIL_LOGGER = "api.services.email"
PASSWORD = "Correct horse battery staple 42"


@dataclass(frozen=True)
class Sent:
    to: str
    subject: str
    text: str


class Outbox:
    """The e-mails sent through the console backend during the test."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        caplog.set_level(logging.INFO, logger=EMAIL_LOGGER)
        self._caplog = caplog

    @property
    def messages(self) -> list[Sent]:
        return [
            Sent(*record.args)
            for record in self._caplog.records
            if record.name == EMAIL_LOGGER and record.levelno == logging.INFO
        ]

    def last_to(self, address: str) -> Sent:
        return [m for m in self.messages if m.to == address][-1]

    def pin_for(self, address: str) -> str:
        return pin_in(self.last_to(address).text)


def pin_in(text: str) -> str:
    match = re.search(r"(?m)^(\d{6})\r?$", text)  # SMTP bodies end lines with CRLF
    assert match, f"no PIN in: {text!r}"
    return match.group(1)


def new_email() -> str:
    return f"driver-{uuid.uuid4().hex[:10]}@example.com"


def sign_up(
    client: httpx.Client, outbox: Outbox, email: str | None = None, password: str = PASSWORD
) -> dict:
    """Sign a new user up through the API; returns the token bundle."""
    email = email or new_email()
    assert client.post("/request_pin", json={"email": email}).status_code == 202
    pin = outbox.pin_for(email)
    response = client.post(
        "/confirm_signup", json={"email": email, "password": password, "pin": pin}
    )
    assert response.status_code == 201, response.text
    return response.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
