"""Schemas shared by every area: strict input base, list envelope, problem bodies, and the
text checks that keep what PostgreSQL cannot store (NUL) out of the database."""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

T = TypeVar("T")

CONTROL = re.compile(r"[\x00-\x1f\x7f]")
CONTROL_BUT_LINE_BREAKS_AND_TABS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def refusing(control: re.Pattern[str]) -> AfterValidator:
    """Refuse text containing `control` characters (422 naming the field)."""

    def check(value: str) -> str:
        if control.search(value):
            raise PydanticCustomError("control_character", "Must not contain control characters")
        return value

    return AfterValidator(check)


def without_nul(value: str) -> str:
    """Text we did not write (an AI provider's) made storable: PostgreSQL refuses NUL in
    text and JSONB alike."""
    return value.replace("\x00", "")


OneLine = refusing(CONTROL)
"""Validator: one line of text (no control characters at all)."""
MultiLine = refusing(CONTROL_BUT_LINE_BREAKS_AND_TABS)
"""Validator: free text, where only tabs and line breaks are allowed control characters."""
FreeText = Annotated[str, MultiLine]


def _not_null(value: T | None) -> T:
    if value is None:
        raise PydanticCustomError("not_null", "Cannot be null; leave the field out to keep it")
    return value


def _without_null(schema: dict[str, Any]) -> None:
    schema.pop("default", None)
    schema.update(next(s for s in schema.pop("anyOf") if s.get("type") != "null"))


Omittable = Annotated[T | None, AfterValidator(_not_null), Field(json_schema_extra=_without_null)]
"""A field that may be left out (it then reads None: give it `= None`) but never sent as
null, e.g. a PATCH field that cannot be cleared; the documented schema says so too."""


class InputModel(BaseModel):
    """Base of every request body and query: unknown fields are refused, so a client can
    never mass-assign `id`, `user_id`, timestamps or anything else we did not ask for."""

    model_config = ConfigDict(extra="forbid")


class OutputModel(BaseModel):
    """Base of every response body; reads ORM objects directly."""

    model_config = ConfigDict(from_attributes=True)


class Page(OutputModel, Generic[T]):
    """A page of a list: `total` counts every item, not just this page's."""

    items: list[T]
    total: int = Field(ge=0)


class Pagination(InputModel):
    limit: int = Field(50, ge=1, le=100, description="Items per page")
    offset: int = Field(0, ge=0, le=1_000_000, description="Items to skip")


class FieldProblem(BaseModel):
    loc: list[str | int] = Field(description="Path of the invalid field, e.g. ['body', 'year']")
    field: str = Field(description="The same path, dotted")
    message: str
    type: str


class Problem(BaseModel):
    """RFC 9457 problem details, plus our machine-readable `code`."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldProblem] | None = Field(
        None, description="Validation errors, per field (at most 20)"
    )
    errors_omitted: int | None = Field(
        None, description="How many more validation errors there were than listed"
    )
    retry_after: int | None = Field(None, description="Seconds to wait (429 only)")
