"""Schemas shared by every area: strict input base, list envelope, problem bodies, and the
one rule for text users send (`OneLine`, `MultiLine`, the password rules; the characters
themselves are defined in api/utils/text.py, with the cleaning of text from the provider).

How the documented schemas read (they are what clients are generated from):
- a request field that may be left out is optional with no `default` in the schema (a
  non-trivial default is told in its description instead): openapi-typescript 7 turns every
  property with a default into a required one, so `{make, model, year}` would not compile;
- it is nullable only when the server accepts null there (`null` then means what its
  description says); `Omittable[X]` declares a field that may be left out but never null;
- a response field is required whenever the server always sends it (null or not).
"""

from __future__ import annotations

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


# What each refused character is called in a 422, by what `CharacterRule.problem` found.
_PROBLEMS = {
    "lone_surrogate": "Must be valid Unicode text",
    "control_character": "Must not contain control characters",
    "bidi_override": "Must not contain bidirectional overrides",
}


def text_rule(rule: text.CharacterRule, *, visible: bool = True) -> WrapValidator:
    """The validator behind every text field, placed after its trimming and length
    constraints: characters `rule` refuses are a 422 naming the field, checked before the
    constraints so every field answers the same error; with `visible`, so is text left
    non-empty but with nothing visible in it (a name of zero-width spaces)."""

    def check(value: Any, constrained: ValidatorFunctionWrapHandler) -> Any:
        problem = rule.problem(value) if isinstance(value, str) else None
        if problem is not None:
            raise PydanticCustomError(problem, _PROBLEMS[problem])
        value = constrained(value)
        if visible and isinstance(value, str) and value and not text.has_visible(value):
            raise PydanticCustomError("invisible_text", "Must contain visible characters")
        return value

    return WrapValidator(check)


# Validators, placed after any trimming or length constraint: `Annotated[str, ..., OneLine]`.
OneLine = text_rule(text.ONE_LINE)
"""One line of text: names, makes, models (no control character at all)."""
MultiLine = text_rule(text.MULTI_LINE)
"""Free text, where tabs and line breaks are the only control characters allowed."""
NewSecret = text_rule(text.ONE_LINE, visible=False)
"""A password being chosen: no control characters (nobody can type them back)."""
Secret = text_rule(text.ANY_TEXT, visible=False)
"""A password or token being checked: anything that can be encoded, so no existing password
is refused for a character that was allowed when it was set."""
FreeText = Annotated[str, MultiLine]


def _defaults_in_descriptions(schema: dict[str, Any]) -> None:
    """Request schemas: no `default` keyword (see the module's docstring); the server's
    default is told in words when it is more than "nothing"."""
    for prop in schema.get("properties", {}).values():
        default = prop.pop("default", None)
        if default not in (None, [], {}):
            told = f"Default: {str(default).lower() if isinstance(default, bool) else default}."
            said = prop.get("description", "").rstrip(".")
            prop["description"] = f"{said}. {told}" if said else told


def without_null(schema: dict[str, Any]) -> None:
    """Drop a schema's `null` branch (and a `default: null` with it), in place."""
    if schema.get("default", ...) is None:
        del schema["default"]
    branches = [branch for branch in schema.pop("anyOf", []) if branch.get("type") != "null"]
    if len(branches) == 1:  # the schema's own keywords (its description) win
        merged = branches[0] | schema
        schema.clear()
        schema.update(merged)
    elif branches:
        schema["anyOf"] = branches


def _not_null(value: T | None) -> T:
    if value is None:
        raise PydanticCustomError("not_null", "Cannot be null; leave the field out to keep it")
    return value


Omittable = Annotated[T | None, AfterValidator(_not_null), Field(json_schema_extra=without_null)]
"""A field that may be left out (it then reads None: give it `= None`) but never sent as
null, e.g. a PATCH field that cannot be cleared; the documented schema says so too."""


def _form_schema(schema: dict[str, Any]) -> None:
    _defaults_in_descriptions(schema)
    for prop in schema.get("properties", {}).values():
        without_null(prop)


class InputModel(BaseModel):
    """Base of every request body and query: unknown fields are refused, so a client can
    never mass-assign `id`, `user_id`, timestamps or anything else we did not ask for."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_defaults_in_descriptions)


FORM = ConfigDict(json_schema_extra=_form_schema)
"""`model_config` of a multipart/form-data body: a part is sent or left out, never null, so
no field is nullable (a generated client would otherwise send the text "None")."""


class OutputModel(BaseModel):
    """Base of every response body; reads ORM objects directly. Every field is always sent,
    so every field is required in the documented schema."""

    model_config = ConfigDict(
        from_attributes=True, json_schema_serialization_defaults_required=True
    )


class Page(OutputModel, Generic[T]):
    """A page of a list: `total` counts every item, not just this page's. Responses use a
    named subclass per item (`class VehiclePage(Page[VehiclePublic])`), so the document
    and generated clients name it `VehiclePage`, not `Page_VehiclePublic_`."""

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
    """RFC 9457 problem details, plus our machine-readable `code` (documentation of what
    `api.utils.http.problem_body` sends; the optional members are left out, never null)."""

    type: str = Field(description="A URI naming the kind of problem")
    title: str
    status: int
    detail: str = Field(description="What went wrong, for people")
    code: str = Field(description="Stable machine-readable name, e.g. vin_taken")
    field: Omittable[str] = Field(
        None, description="The request field a media error is about (400, 413, 415), e.g. images[1]"
    )
    errors: Omittable[list[FieldProblem]] = Field(
        None, description="Validation errors, one per field (422), at most 20"
    )
    errors_omitted: Omittable[int] = Field(
        None, description="How many validation errors there were beyond those listed (422)"
    )
    retry_after: Omittable[int] = Field(
        None, description="Seconds to wait, as in Retry-After (429 rate limits)", ge=1
    )
