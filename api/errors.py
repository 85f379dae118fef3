"""Domain errors. Services raise these; `api.endpoints.dispatch` is the one place that turns
them into HTTP responses (`api.utils.http.problem_response`), so a service never knows about
status codes' wire form."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar

from api.utils.text import safe_text
from api.utils.waits import whole_seconds

# A 4xx body must stay small whatever was sent (one request must not make the server build,
# or the client download, megabytes of errors): at most this many field errors are listed,
# and a path part or message a client chose (an unknown key can be any length) is clipped.
MAX_FIELD_ERRORS = 20
MAX_LOC_PART_CHARS = 64
MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class FieldError:
    """One invalid input field: `loc` is its path (e.g. ["body", "mods", 0, "name"])."""

    loc: list[str | int]
    message: str
    type: str = "value_error"

    def bounded(self) -> FieldError:
        """The same error with each path part and the message made safe and clipped (they
        may quote what the client sent)."""
        return FieldError(
            loc=[safe_text(p, MAX_LOC_PART_CHARS) if isinstance(p, str) else p for p in self.loc],
            message=safe_text(self.message, MAX_MESSAGE_CHARS),
            type=safe_text(self.type, MAX_LOC_PART_CHARS),
        )


class AppError(Exception):
    """Base of every error a client may see. `detail` is shown to the client verbatim.

    `keep_changes=True` marks a failure that is itself worth recording: the request's unit
    of work commits what the service wrote before raising (a wrong PIN counts an attempt,
    a failed login counts towards the throttle) instead of rolling it back.
    """

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal Server Error"
    code: str = "internal_error"  # a class's default; an instance may name its own

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        keep_changes: bool = False,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code or type(self).code
        self.headers = headers or {}
        self.extra = extra or {}
        self.keep_changes = keep_changes


class BadRequestError(AppError):
    status, title, code = 400, "Bad Request", "bad_request"


class AuthenticationError(AppError):
    status, title, code = 401, "Unauthorized", "not_authenticated"

    def __init__(self, detail: str = "Missing or invalid access token", **kwargs: Any) -> None:
        kwargs.setdefault("headers", {"WWW-Authenticate": 'Bearer realm="axly"'})
        super().__init__(detail, **kwargs)


class ForbiddenError(AppError):
    status, title, code = 403, "Forbidden", "forbidden"


class NotFoundError(AppError):
    status, title, code = 404, "Not Found", "not_found"


class ConflictError(AppError):
    status, title, code = 409, "Conflict", "conflict"


class LengthRequiredError(AppError):
    status, title, code = 411, "Length Required", "length_required"


class PayloadTooLargeError(AppError):
    status, title, code = 413, "Content Too Large", "payload_too_large"


class UnsupportedMediaTypeError(AppError):
    status, title, code = 415, "Unsupported Media Type", "unsupported_media_type"


class ValidationFailedError(AppError):
    """Invalid fields: the first MAX_FIELD_ERRORS are kept (bounded), the rest only counted
    (`omitted`), so the response stays small however many fields a body gets wrong."""

    status, title, code = 422, "Unprocessable Content", "validation_failed"

    def __init__(self, errors: Sequence[FieldError], detail: str | None = None) -> None:
        self.errors = [error.bounded() for error in errors[:MAX_FIELD_ERRORS]]
        self.omitted = len(errors) - len(self.errors)
        fields = ", ".join(".".join(str(part) for part in e.loc) for e in self.errors)
        more = f" and {self.omitted} more" if self.omitted else ""
        super().__init__(detail or f"Invalid input: {fields}{more}")


class RejectedInputError(AppError):
    """The AI provider refused what the user sent (an image it cannot read, content its
    policy refuses): the user can change it; `extra["rejected"]` names it."""

    status, title, code = 422, "Unprocessable Content", "upstream_rejected_input"


class RateLimitedError(AppError):
    status, title, code = 429, "Too Many Requests", "rate_limited"

    def __init__(self, detail: str, *, retry_after: timedelta, code: str | None = None) -> None:
        seconds = whole_seconds(retry_after)
        super().__init__(
            detail,
            code=code,
            headers={"Retry-After": str(seconds)},
            extra={"retry_after": seconds},
        )


class UpstreamError(AppError):
    status, title, code = 502, "Bad Gateway", "upstream_error"


class ServiceUnavailableError(AppError):
    status, title, code = 503, "Service Unavailable", "service_unavailable"


class UpstreamTimeoutError(AppError):
    status, title, code = 504, "Gateway Timeout", "upstream_timeout"


class LimitReachedError(AppError):
    """A fixed allowance is used up (waiting will not help, so no Retry-After)."""

    status, title, code = 429, "Too Many Requests", "limit_reached"
