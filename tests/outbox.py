"""The e-mails the console backend sends (what a developer sees in the log), read back."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pytest

EMAIL_LOGGER = "api.services.email"


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
            Sent(*map(str, record.args or ()))
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
