"""What list services return: one page of items and the count of all of them (routes
serialise it as the `{items, total}` envelope, `api.schemas.common.Page`), read in one
statement."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Row, Select, bindparam, func, select
from sqlalchemy.orm import Session

T = TypeVar("T")


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    total: int
    # The items are rows read from our own tables whose columns are the response items'
    # fields (names and types): the page is then sent as read, not validated first (see
    # `api.endpoints._serialise`).
    table_rows: bool = False


@dataclass(frozen=True)
class PagedQuery:
    """A list's statements, with the page's LIMIT and OFFSET (and any of the query's own
    `bindparam`s) bound at execution, so a list that always runs the same query can build
    them once per process: building a statement costs more Python than running it.

    `page` reads one page of the query's rows, each ending with `page_total`: a window
    count, taken over the whole result before LIMIT and OFFSET apply. `count` counts the
    rows alone, for a page past the end, which has no row to carry that count."""

    page: Select[Any]
    count: Select[Any]

    @classmethod
    def of(cls, query: Select[Any]) -> PagedQuery:
        counted_over = func.count().over().label("page_total")
        return cls(
            page=query.add_columns(counted_over)
            .limit(bindparam("page_limit"))
            .offset(bindparam("page_offset")),
            count=select(func.count()).select_from(query.order_by(None).subquery()),
        )


def page_of(
    session: Session,
    query: PagedQuery,
    *,
    limit: int,
    offset: int,
    values: dict[str, Any] | None = None,
) -> tuple[Sequence[Row[*tuple[Any, ...]]], int]:
    """One page of `query`'s rows (as read: their named columns are what a response model
    reads, the trailing `page_total` aside) and how many rows it has in all, in one
    statement; `values`, those of the query's own `bindparam`s."""
    values = values or {}
    page = session.execute(query.page, {**values, "page_limit": limit, "page_offset": offset}).all()
    if page:
        return page, page[0][-1]
    if offset == 0:
        return [], 0
    return [], session.scalar(query.count, values) or 0
