"""The HTTP server behind `python -m devhost`: waitress, told not to hide chunked uploads.

waitress de-chunks a request body, invents a Content-Length for it and drops the
Transfer-Encoding header, so a WSGI app cannot tell a chunked upload from a sized one. The
Functions host can, and hands a chunked body to the function as empty (see
`host._read_body`); this parser puts the header back so devhost does the same.
"""

from __future__ import annotations

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
