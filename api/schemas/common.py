"""Schemas shared by every area: strict input base, list envelope, problem bodies, and the
one rule for text users send (`OneLine`, `MultiLine`, the password rules; the characters
themselves are defined in api/utils/text.py, with the cleaning of text from the provider)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from api.utils import text

T = TypeVar("T")


def text_rule(refused: re.Pattern[str], *, visible: bool = True) -> WrapValidator:
    """The validator behind every text field, placed after its trimming and length
    constraints: `refused` characters (controls; always lone surrogates) are a 422 naming
    the field, checked before the constraints so every field answers the same error; with
    `visible`, so is text left non-empty but with nothing visible in it (a name of
    zero-width spaces)."""

    def check(value: Any, constrained: ValidatorFunctionWrapHandler) -> Any:
        found = refused.search(value) if isinstance(value, str) else None
        if found and text.LONE_SURROGATE.match(found.group()):
            raise PydanticCustomError("lone_surrogate", "Must be valid Unicode text")
        if found:
            raise PydanticCustomError("control_character", "Must not contain control characters")
        value = constrained(value)
        if visible and isinstance(value, str) and value and not text.has_visible(value):
            raise PydanticCustomError("invisible_text", "Must contain visible characters")
        return value

    return WrapValidator(check)


# Validators, placed after any trimming or length constraint: `Annotated[str, ..., OneLine]`.
OneLine = text_rule(text.ANY_CONTROL)
"""One line of text: names, makes, models (no control character at all)."""
MultiLine = text_rule(text.CONTROL_BUT_LINE_BREAKS_AND_TABS)
"""Free text, where tabs and line breaks are the only control characters allowed."""
NewSecret = text_rule(text.ANY_CONTROL, visible=False)
"""A password being chosen: no control characters (nobody can type them back)."""
Secret = text_rule(text.LONE_SURROGATE, visible=False)
"""A password or token being checked: anything that can be encoded, so no existing password
is refused for a character that was allowed when it was set."""
OneLineText = Annotated[str, OneLine]
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
