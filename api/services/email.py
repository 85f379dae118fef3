"""E-mail delivery: SendGrid (SENDGRID_KEY set), SMTP (SMTP_HOST set), else the console.

Every backend raises `ServiceUnavailableError("could not send e-mail, try again")` when a
message does not go out, so callers (and their unit of work) never leave a PIN stored for
an e-mail that was never sent.
"""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass

from api import telemetry
from api.errors import ServiceUnavailableError
from api.settings import Settings, get_settings

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 10
SEND_FAILED = "could not send e-mail, try again"


@dataclass(frozen=True)
class Email:
    to: str
    subject: str
    text: str
    html: str


def send_email(message: Email) -> None:
    settings = get_settings()
    if settings.sendgrid_key:
        _send_with_sendgrid(message, settings)
    elif settings.smtp_host:
        _send_with_smtp(message, settings)
    else:
        _send_to_console(message, settings)


def _send_to_console(message: Email, settings: Settings) -> None:
    if settings.environment == "production":
        # A PIN in the production logs would be readable by anyone with log access.
        log.error("No e-mail backend is configured (set SENDGRID_KEY or SMTP_HOST)")
        raise ServiceUnavailableError(SEND_FAILED, code="email_unavailable")
    # `private`: the address and the PIN must never reach telemetry (api.telemetry).
    log.info(
        "E-mail to %s: %s\n%s", message.to, message.subject, message.text, extra={"private": True}
    )


def _send_with_sendgrid(message: Email, settings: Settings) -> None:
    import http.client

    from python_http_client.exceptions import HTTPError
    from sendgrid import SendGridAPIClient
    from sendgrid.helpers.mail import From, Mail

    mail = Mail(
        from_email=From(settings.email_from, settings.product_name),
        to_emails=message.to,
        subject=message.subject,
        plain_text_content=message.text,
        html_content=message.html,
    )
    client = SendGridAPIClient(settings.sendgrid_key, host=settings.sendgrid_api_host)
    client.client.timeout = SEND_TIMEOUT_S
    try:
        client.send(mail)
    except HTTPError as exc:
        log.error("SendGrid refused the e-mail: HTTP %s %s", exc.status_code, exc.body)
        raise ServiceUnavailableError(SEND_FAILED, code="email_unavailable") from None
    except (OSError, http.client.HTTPException) as exc:  # unreachable, timeout, garbled reply
        log.error("SendGrid could not be reached: %r", exc)
        raise ServiceUnavailableError(SEND_FAILED, code="email_unavailable") from None


def _send_with_smtp(message: Email, settings: Settings) -> None:
    import smtplib
    import ssl
    from email.message import EmailMessage
    from email.utils import formataddr

    mime = EmailMessage()
    mime["From"] = formataddr((settings.product_name, settings.email_from))
    mime["To"] = message.to
    mime["Subject"] = message.subject
    mime.set_content(message.text)
    mime.add_alternative(message.html, subtype="html")
    server: dict[str, telemetry.Value] = {
        "server.address": settings.smtp_host,
        "server.port": settings.smtp_port,
    }
    try:
        with (
            telemetry.dependency("SMTP send", **server),
            smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SEND_TIMEOUT_S) as smtp,
        ):
            if settings.smtp_starttls:
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                smtp.login(settings.smtp_username, settings.smtp_password)
            smtp.send_message(mime)
    except (smtplib.SMTPException, OSError) as exc:
        # The exception's text may quote the recipient's address: its type and code only.
        log.error(
            "The SMTP server did not take the e-mail: %s %s",
            type(exc).__name__,
            getattr(exc, "smtp_code", ""),
        )
        raise ServiceUnavailableError(SEND_FAILED, code="email_unavailable") from None


# --- the messages ---------------------------------------------------------------------------


def _compose(to: str, subject: str, paragraphs: list[str], pin: str | None = None) -> Email:
    settings = get_settings()
    product = settings.product_name
    text = "\n\n".join(paragraphs[:1] + ([pin] if pin else []) + paragraphs[1:])
    html_parts = [f"<p>{html.escape(p)}</p>" for p in paragraphs]
    if pin:
        code = f'<p style="font-size:28px;font-weight:bold;letter-spacing:6px">{pin}</p>'
        html_parts.insert(1, code)
    body = "".join(html_parts)
    page = f'<!doctype html><html><body style="font-family:sans-serif">{body}</body></html>'
    return Email(to=to, subject=f"{product}: {subject}", text=f"{text}\n\n{product}\n", html=page)


def signup_pin_email(to: str, pin: str) -> Email:
    minutes = get_settings().pin_exp_minutes
    return _compose(
        to,
        "your sign-up code",
        [
            "Enter this code in the app to confirm your e-mail address:",
            f"It works once, for {minutes} minutes. If you did not ask for it, ignore this "
            "e-mail: no account is created without the code.",
        ],
        pin,
    )


def existing_account_email(to: str) -> Email:
    return _compose(
        to,
        "you already have an account",
        [
            "Someone (hopefully you) tried to sign up with this e-mail address, but it "
            "already has an account.",
            "Log in instead, or reset your password from the log-in screen if you forgot "
            "it. If this was not you, ignore this e-mail: nothing has changed.",
        ],
    )


def password_reset_pin_email(to: str, pin: str) -> Email:
    minutes = get_settings().pin_exp_minutes
    return _compose(
        to,
        "your password reset code",
        [
            "Enter this code in the app to choose a new password:",
            f"It works once, for {minutes} minutes. If you did not ask for it, ignore this "
            "e-mail: your password stays as it is.",
        ],
        pin,
    )


def no_account_email(to: str) -> Email:
    return _compose(
        to,
        "password reset requested",
        [
            "Someone (hopefully you) asked to reset the password of an account with this "
            "e-mail address, but no account uses it.",
            "If you have an account, it may use another address. If this was not you, "
            "ignore this e-mail.",
        ],
    )
