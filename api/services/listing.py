"""What list services return: one page of items and the count of all of them (routes
serialise it as the `{items, total}` envelope, `api.schemas.common.Page`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    total: int
