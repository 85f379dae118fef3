"""The HTTP server behind `python -m devhost`: waitress, told not to hide chunked uploads.

waitress de-chunks a request body, invents a Content-Length for it and drops the
Transfer-Encoding header, so a WSGI app cannot tell a chunked upload from a sized one. The
Functions host can, and hands a chunked body to the function as empty (see
`host._read_body`); this parser puts the header back so devhost does the same.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer, MultiSocketServer
from waitress.server import create_server as create_waitress_server


class _ChunkedAwareParser(HTTPRequestParser):
    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        if self.chunked:
            cast(dict[str, str], self.headers)["TRANSFER_ENCODING"] = "chunked"


class _Channel(HTTPChannel):
    parser_class = _ChunkedAwareParser


def create_server(app: Any, **adjustments: Any) -> BaseWSGIServer | MultiSocketServer:
    """`waitress.create_server` (same arguments) whose requests keep Transfer-Encoding."""
    server = create_waitress_server(app, **adjustments)
    # A MultiSocketServer's map holds one BaseWSGIServer per address it listens on.
    listeners: list[object] = (
        list((server.map or {}).values()) if isinstance(server, MultiSocketServer) else [server]
    )
    for listener in listeners:
        if isinstance(listener, BaseWSGIServer):
            listener.channel_class = _Channel
    return server


@contextmanager
def serving(app: Any, **adjustments: Any) -> Iterator[Any]:
    """`create_server(app, **adjustments)` running on a thread (for tests and benchmarks),
    stopped when the block ends. Its worker threads are stopped before its trigger is
    closed: each wakes the loop through the trigger when it finishes a request, possibly
    after the client has read the response, and would otherwise write to a closed (or
    reused) file descriptor. Any: the waitress stubs lack `effective_port` and type
    `trigger` as an int."""
    server: Any = create_server(app, **adjustments)
    loop = threading.Thread(target=server.run, daemon=True)
    loop.start()
    try:
        yield server
    finally:
        server.task_dispatcher.shutdown()
        server.trigger.pull_trigger(server.close)
        loop.join(timeout=5)
