"""`multipart/form-data` bodies, parsed by Werkzeug's multipart parser (no hand-written
parsing): text fields as `str`, then file parts as raw `bytes`, each in the order sent."""

from __future__ import annotations

import io

import azure.functions as func

from api.errors import BadRequestError, PayloadTooLargeError

MAX_FORM_PARTS = 40

FormItems = list[tuple[str, str | bytes]]


def parse_form(req: func.HttpRequest, *, max_bytes: int) -> FormItems:
    """Every part as (name, value); a malformed body is a 400 that says so."""
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.formparser import MultiPartParser
    from werkzeug.http import parse_options_header

    _, options = parse_options_header(req.headers.get("Content-Type"))
    boundary = options.get("boundary", "")
    if not boundary:
        raise BadRequestError(
            "The multipart body has no boundary in its Content-Type", code="malformed_multipart"
        )
    body = req.get_body() or b""
    parser = MultiPartParser(max_form_memory_size=max_bytes, max_form_parts=MAX_FORM_PARTS)
    try:
        form, files = parser.parse(io.BytesIO(body), boundary.encode("latin-1"), len(body))
    except RequestEntityTooLarge:
        raise PayloadTooLargeError(
            f"The multipart body has more than {MAX_FORM_PARTS} parts or too large a text field"
        ) from None
    except ValueError:
        raise BadRequestError(
            "The multipart body is malformed", code="malformed_multipart"
        ) from None
    items: FormItems = list(form.items(multi=True))
    items += [(name, part.read()) for name, part in files.items(multi=True)]
    return items
