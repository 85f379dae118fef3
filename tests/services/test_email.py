"""E-mail delivery with the real clients against local stand-ins: the official SendGrid
client against pytest-httpserver, smtplib against an aiosmtpd server. A failed send is a
503 and leaves no usable PIN."""

from __future__ import annotations

import contextlib
import email
import json
import socket
import threading
from collections.abc import Callable, Iterator
from email.message import Message

import httpx
import pytest
from aiosmtpd.controller import Controller
from opentelemetry.trace import SpanKind
from pytest_httpserver import HTTPServer

from api.services import email as mail
from api.settings import get_settings
from tests.exported import Exported
from tests.factories import PASSWORD, new_email
from tests.outbox import pin_in

SENDGRID_KEY = "SG.test-key-not-real"


@pytest.fixture
def sendgrid(httpserver: HTTPServer, override_settings: Callable[..., None]) -> HTTPServer:
    override_settings(
        SENDGRID_KEY=SENDGRID_KEY,
        SENDGRID_API_HOST=httpserver.url_for("").rstrip("/"),
        EMAIL_FROM="hello@axly.pro",
        PRODUCT_NAME="Axly Garage",
    )
    return httpserver


def test_sendgrid_gets_the_pin_email(client: httpx.Client, sendgrid: HTTPServer) -> None:
    sendgrid.expect_oneshot_request("/v3/mail/send", method="POST").respond_with_data(
        "", status=202
    )
    address = new_email()
    assert client.post("/request_pin", json={"email": address}).status_code == 202

    ((request, _),) = sendgrid.log
    assert request.headers["Authorization"] == f"Bearer {SENDGRID_KEY}"
    assert request.headers["Content-Type"] == "application/json"
    posted = json.loads(request.get_data())
    text, html = posted["content"][0]["value"], posted["content"][1]["value"]
    pin = pin_in(text)
    assert f">{pin}</p>" in html
    expected = mail.signup_pin_email(address, pin)
    assert posted == {
        "from": {"email": "hello@axly.pro", "name": "Axly Garage"},
        "subject": "Axly Garage: your sign-up code",
        "personalizations": [{"to": [{"email": address}]}],
        "content": [
            {"type": "text/plain", "value": expected.text},
            {"type": "text/html", "value": expected.html},
        ],
    }
    # The PIN that crossed the wire is the one that works.
    confirm = client.post(
        "/confirm_signup", json={"email": address, "password": PASSWORD, "pin": pin}
    )
    assert confirm.status_code == 201


def test_failed_sendgrid_send_is_503_and_leaves_no_usable_pin(
    client: httpx.Client, sendgrid: HTTPServer
) -> None:
    sendgrid.expect_oneshot_request("/v3/mail/send", method="POST").respond_with_json(
        {"errors": [{"message": "internal error"}]}, status=500
    )
    address = new_email()
    response = client.post("/request_pin", json={"email": address})
    assert response.status_code == 503
    assert response.json()["detail"] == "could not send e-mail, try again"
    assert response.headers["content-type"].startswith("application/problem+json")

    ((request, _),) = sendgrid.log
    pin = pin_in(json.loads(request.get_data())["content"][0]["value"])
    confirm = client.post(
        "/confirm_signup", json={"email": address, "password": PASSWORD, "pin": pin}
    )
    assert confirm.status_code == 403
    # Nothing counted towards the resend throttle either: the user can simply try again.
    sendgrid.expect_oneshot_request("/v3/mail/send", method="POST").respond_with_data(
        "", status=202
    )
    assert client.post("/request_pin", json={"email": address}).status_code == 202


def free_port() -> int:
    """A local port nothing listens on (until someone binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_sendgrid_is_503(client: httpx.Client, override_settings) -> None:
    override_settings(
        SENDGRID_KEY=SENDGRID_KEY, SENDGRID_API_HOST=f"http://127.0.0.1:{free_port()}"
    )
    response = client.post("/request_password_reset_pin", json={"email": new_email()})
    assert response.status_code == 503


@pytest.fixture
def garbling_server() -> Iterator[str]:
    """A server that answers every connection with bytes that are not HTTP."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):  # closed at the end of the test
            while True:
                connection, _ = listener.accept()
                with connection:
                    connection.recv(65536)
                    connection.sendall(b"this is not HTTP\r\n\r\n")

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_garbled_sendgrid_answer_is_503(
    client: httpx.Client, override_settings: Callable[..., None], garbling_server: str
) -> None:
    override_settings(SENDGRID_KEY=SENDGRID_KEY, SENDGRID_API_HOST=garbling_server)
    response = client.post("/request_pin", json={"email": new_email()})
    assert response.status_code == 503
    assert response.json()["detail"] == "could not send e-mail, try again"


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str], Message]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # aiosmtpd calls it by name
        parsed = email.message_from_bytes(envelope.content)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox(override_settings: Callable[..., None]) -> Iterator[Inbox]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    override_settings(SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_STARTTLS="false")
    yield inbox
    controller.stop()


def test_smtp_backend_delivers_text_and_html(client: httpx.Client, smtp_inbox: Inbox) -> None:
    address = new_email()
    assert client.post("/request_pin", json={"email": address}).status_code == 202
    ((mail_from, recipients, message),) = smtp_inbox.messages
    assert mail_from == "no-reply@axly.pro"
    assert recipients == [address]
    assert message["Subject"] == "Axly: your sign-up code"
    assert message["From"] == "Axly <no-reply@axly.pro>"
    plain, html = (part.get_payload(decode=True).decode() for part in message.get_payload())
    pin = pin_in(plain)
    assert f">{pin}</p>" in html
    confirm = client.post(
        "/confirm_signup", json={"email": address, "password": PASSWORD, "pin": pin}
    )
    assert confirm.status_code == 201


def test_console_backend_is_refused_in_production(
    client: httpx.Client, override_settings: Callable[..., None]
) -> None:
    override_settings(AXLY_ENV="production")
    response = client.post("/request_pin", json={"email": new_email()})
    assert response.status_code == 503


def test_sendgrid_is_a_dependency_of_the_request_in_telemetry(
    sendgrid: HTTPServer, exported: Exported, client: httpx.Client
) -> None:
    sendgrid.expect_request("/v3/mail/send", method="POST").respond_with_data("", status=202)
    response = client.post("/request_pin", json={"email": new_email()})
    assert response.status_code == 202

    (server,) = [span for span in exported.spans if span.kind == SpanKind.SERVER]
    (call,) = [span for span in exported.spans if "http.url" in (span.attributes or {})]
    assert call.attributes["http.url"] == sendgrid.url_for("/v3/mail/send")
    assert call.attributes["http.status_code"] == 202
    assert call.parent is not None
    assert call.parent.span_id == server.context.span_id
    assert call.attributes["request_id"] == response.headers["X-Request-ID"]


def test_smtp_is_a_dependency_of_the_request_in_telemetry(
    smtp_inbox: Inbox, exported: Exported, client: httpx.Client
) -> None:
    response = client.post("/request_pin", json={"email": new_email()})
    assert response.status_code == 202
    assert len(smtp_inbox.messages) == 1

    (server,) = [span for span in exported.spans if span.kind == SpanKind.SERVER]
    (send,) = [span for span in exported.spans if span.name == "SMTP send"]
    assert send.kind == SpanKind.CLIENT
    assert send.attributes["server.address"] == get_settings().smtp_host
    assert send.attributes["server.port"] == get_settings().smtp_port
    assert send.parent is not None
    assert send.parent.span_id == server.context.span_id
    assert send.attributes["request_id"] == response.headers["X-Request-ID"]


class RefusingInbox(Inbox):
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        return "550 5.1.1 Mailbox unavailable"  # aiosmtpd calls it by name


def test_smtp_refusal_is_503_and_the_log_never_names_the_recipient(
    client: httpx.Client, override_settings: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    controller = Controller(RefusingInbox(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        override_settings(SMTP_HOST="127.0.0.1", SMTP_PORT=str(port), SMTP_STARTTLS="false")
        address = new_email()
        response = client.post("/request_pin", json={"email": address})
    finally:
        controller.stop()
    assert response.status_code == 503
    assert "SMTPRecipientsRefused" in caplog.text
    assert address not in caplog.text
