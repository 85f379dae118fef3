"""Each migration test gets a database of its own, empty until the test migrates it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool


@pytest.fixture
def fresh_db(make_database: Callable[..., str]) -> Iterator[Connection]:
    """A connection to a new, empty database (no transaction open)."""
    engine = create_engine(make_database(), poolclass=NullPool)
    with engine.connect() as connection:
        yield connection
    engine.dispose()
