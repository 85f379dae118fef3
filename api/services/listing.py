"""What list services return: one page of items and the count of all of them (routes
serialise it as the `{items, total}` envelope, `api.schemas.common.Page`), read in one
statement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, bindparam, func, select

from api.db import Read, Reader

T = TypeVar("T")
Record = tuple[Any, ...]  # a row as `api.db.Reader` reads it


@dataclass(frozen=True)
class Listing(Generic[T]):
    items: list[T]
    total: int
    # Set when the items are rows read from our own tables, of these columns, which are the
    # response items' fields (names and types): the page is then sent as read, not validated
    # first (see `api.endpoints._serialise`).
    columns: tuple[str, ...] | None = None


@dataclass(frozen=True)
class PagedQuery:
    """A list's statements, compiled once per process (`api.db.Read`), with the page's
    LIMIT and OFFSET (and any of the query's own `bindparam`s) bound at execution.

    `page` reads one page of the query's rows, each ending with `page_total`: a window
    count, taken over the whole result before LIMIT and OFFSET apply. `count` counts the
    rows alone, for a page past the end, which has no row to carry that count."""

    page: Read
    count: Read

    @classmethod
    def of(cls, query: Select[Any]) -> PagedQuery:
        counted_over = func.count().over().label("page_total")
        return cls(
            page=Read.of(
                query.add_columns(counted_over)
                .limit(bindparam("page_limit"))
                .offset(bindparam("page_offset"))
            ),
            count=Read.of(select(func.count()).select_from(query.order_by(None).subquery())),
        )


def page_of(
    reader: Reader,
    query: PagedQuery,
    *,
    limit: int,
    offset: int,
    values: dict[str, Any] | None = None,
) -> tuple[list[Record], int]:
    """One page of `query`'s rows (in `query.page.columns` order, the trailing `page_total`
    included) and how many rows it has in all, in one statement; `values`, those of the
    query's own `bindparam`s."""
    values = values or {}
    page = reader.rows(query.page, {**values, "page_limit": limit, "page_offset": offset})
    if page:
        return page, page[0][-1]
    if offset == 0:
        return [], 0
    return [], reader.rows(query.count, values)[0][0]
