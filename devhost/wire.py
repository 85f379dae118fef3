"""What the app's connections send to PostgreSQL, recorded where nothing is missed: libpq's
own protocol trace of every pooled connection. SQLAlchemy's statement events do not see
psycopg's BEGIN and COMMIT nor the pool's ping; the trace shows every message.

A round trip is a message the client then waits on: a simple `Query` (BEGIN, COMMIT, a
ping) or the `Sync` that ends an extended-protocol statement. A statement is an `Execute`
or a `Query` other than transaction control and the ping; `sql` lists every text sent,
those included (a statement prepared earlier on the connection is executed by name,
without its text).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import IO, Any

from sqlalchemy import Engine, event

_MESSAGE = re.compile(r"^F\t\d+\t(\w+)(?:\t (.*))?$")
_QUERY_TEXT = re.compile(r'^"((?:[^"]|"")*)"')
_PARSE_TEXT = re.compile(r'^"[^"]*" "((?:[^"]|"")*)"')
# Round trips that are not statements of the request: transaction control, the pool's ping.
_NOT_STATEMENTS = frozenset({"BEGIN", "COMMIT", "ROLLBACK", ";"})


@dataclass
class Wire:
    """What was sent while recording."""

    round_trips: int = 0
    statements: int = 0
    sql: list[str] = field(default_factory=list)

    def add(self, trace: str) -> None:
        for line in trace.splitlines():
            message = _MESSAGE.match(line)
            if message is None:
                continue
            kind, rest = message.group(1), message.group(2) or ""
            if kind in ("Query", "Sync"):
                self.round_trips += 1
            text = (_QUERY_TEXT if kind == "Query" else _PARSE_TEXT).match(rest)
            sql = text.group(1).replace('""', '"') if text else ""
            if kind == "Execute" or (kind == "Query" and sql.upper() not in _NOT_STATEMENTS):
                self.statements += 1
            if kind in ("Query", "Parse") and text:
                self.sql.append(sql)


@dataclass
class _Trace:
    """One connection's trace: libpq appends to the file (flushing each message) through a
    descriptor of its own; we read it through another."""

    pgconn: Any
    path: str
    writer: int
    reader: IO[bytes]


class Recorder:
    """Traces each connection of an engine's pool from its first checkout on; `take()`
    returns what was sent since the previous `take()`. A connection's first checkout is
    traced from its checkout event on (a pre-ping comes before it): take() once after a
    warm-up request to count from connections that are traced whole."""

    def __init__(self) -> None:
        self._traces: list[_Trace] = []

    def trace(self, dbapi_connection: Any, *_: object) -> None:
        from psycopg import pq

        pgconn = dbapi_connection.pgconn
        if any(traced.pgconn is pgconn for traced in self._traces):
            return
        handle, path = tempfile.mkstemp(prefix="wire-")
        os.close(handle)
        writer = os.open(path, os.O_WRONLY | os.O_APPEND)
        pgconn.trace(writer)
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        self._traces.append(_Trace(pgconn, path, writer, open(path, "rb")))  # noqa: SIM115

    def take(self) -> Wire:
        wire = Wire()
        for traced in self._traces:
            wire.add(traced.reader.read().decode(errors="replace"))  # since the last take
        return wire

    def close(self) -> None:
        for traced in self._traces:
            traced.pgconn.untrace()  # flushes and forgets the stream (libpq never closes it)
            os.close(traced.writer)
            traced.reader.close()
            os.unlink(traced.path)


@contextmanager
def recording(engine: Engine) -> Iterator[Recorder]:
    """Trace what `engine`'s pooled connections send until the block ends."""
    recorder = Recorder()
    event.listen(engine, "checkout", recorder.trace)
    try:
        yield recorder
    finally:
        event.remove(engine, "checkout", recorder.trace)
        recorder.close()
