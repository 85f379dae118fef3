"""multipart/form-data bodies: fields then files, in the order sent; a bad body is a 4xx."""

from __future__ import annotations

from collections.abc import Sequence

import azure.functions as func
import pytest

from api.errors import BadRequestError, PayloadTooLargeError
from api.utils.multipart import MAX_FORM_PARTS, parse_form

BOUNDARY = "x-boundary"


def form_request(parts: Sequence[tuple[str, bytes, str | None]], boundary: str = BOUNDARY):
    body = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += value + b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    content_type = "multipart/form-data" + (f"; boundary={boundary}" if boundary else "")
    return func.HttpRequest(
        "POST", "http://localhost/api/Diagnose", headers={"Content-Type": content_type}, body=body
    )


def test_text_fields_then_files_each_in_the_order_sent():
    request = form_request(
        [
            ("q", b"Rattle at idle", None),
            ("image", b"\x89PNG", "a.png"),
            ("make", b"Honda", None),
            ("audio", b"RIFF", "a.wav"),
        ]
    )
    assert parse_form(request, max_bytes=1000) == [
        ("q", "Rattle at idle"),
        ("make", "Honda"),
        ("image", b"\x89PNG"),
        ("audio", b"RIFF"),
    ]


def test_a_body_without_a_boundary_is_a_400():
    with pytest.raises(BadRequestError, match="no boundary") as raised:
        parse_form(form_request([("q", b"x", None)], boundary=""), max_bytes=1000)
    assert raised.value.code == "malformed_multipart"


def test_too_many_parts_is_a_413():
    parts = [(f"f{i}", b"x", None) for i in range(MAX_FORM_PARTS + 1)]
    with pytest.raises(PayloadTooLargeError, match=f"more than {MAX_FORM_PARTS} parts"):
        parse_form(form_request(parts), max_bytes=100_000)


def test_a_text_field_over_the_limit_is_a_413():
    with pytest.raises(PayloadTooLargeError):
        parse_form(form_request([("q", b"x" * 2000, None)]), max_bytes=1000)
