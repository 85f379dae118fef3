"""What list services return: one page of items and the count of all of them (routes
serialise it as the `{items, total}` envelope, `api.schemas.common.Page`), read in one
statement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    total: int


def page_of(
    session: Session, query: Select[Any], *, limit: int, offset: int
) -> tuple[list[tuple[Any, ...]], int]:
    """One page of `query`'s rows and how many rows it has in all, in one statement: a
    window count, taken over the whole result before LIMIT and OFFSET apply, rides on every
    row. A page past the end has no row to carry it, so only then is it counted apart."""
    rows = session.execute(query.add_columns(func.count().over()).limit(limit).offset(offset))
    page = rows.all()
    if page:
        return [tuple(row[:-1]) for row in page], page[0][-1]
    if offset == 0:
        return [], 0
    counted = select(func.count()).select_from(query.order_by(None).subquery())
    return [], session.scalar(counted) or 0
