"""Schemas shared by every area: strict input base, list envelope, problem bodies."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

T = TypeVar("T")


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
    errors: list[FieldProblem] | None = Field(None, description="Validation errors, per field")
    retry_after: int | None = Field(None, description="Seconds to wait (429 only)")
